"""The notebook runner: execute every chapter into a notebook with outputs, on a machine without Jupyter Book.

``make execute OUT=<folder>`` (``python3 -m tools.execute --out <folder>``, from the repository's root) is
what a lent GPU machine runs: it has Python, a CUDA torch, the book's numerical packages and the data, but no
Jupyter and no network. The runner needs no installation there: when ``nbclient``, ``jupytext`` or
``ipykernel`` are missing, it installs the wheels that ``make runtime`` downloaded (:mod:`tools.runtime`,
carried along in ``_build/runtime/wheels``) into a temporary folder and runs again with that folder on
``PYTHONPATH``. The repository's root goes on ``PYTHONPATH`` too, so that the kernels import ``book`` without
installing it.

Each chapter of ``_toc.yml`` is read with Jupytext's reader and executed by nbclient in a fresh kernel, in the
profile asked for (``--profile``, else ``$BOOK_PROFILE``, else ``gpu``), with ``BOOK_BUILD=1`` and the
chapters' folder as working directory, as the site build executes them. Cells tagged ``raises-exception`` may
fail; any other error stops the run, naming the chapter and the cell. The folder receives the executed
notebooks, ``results/<profile>.json`` (the chapters write it through ``book.results``, here into a fresh file
of this run alone) and ``manifest.json`` (:class:`tools.edition.Manifest`); it is written as
``<folder>.partial`` and renamed when every chapter succeeded; ``make import FROM=<folder>`` takes it from
there.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME_MODULES = ("nbclient", "nbformat", "jupytext", "ipykernel", "jupyter_client")
RUNTIME_ENV = "BOOK_RUNTIME"  # the folder the wheels were installed into, in the runner's second process
DEFAULT_TIMEOUT_S = 1200


class RunnerError(RuntimeError):
    """The runner cannot start, or a chapter failed."""


def missing_runtime() -> list[str]:
    """The modules the runner needs that this Python cannot import."""
    return [name for name in RUNTIME_MODULES if importlib.util.find_spec(name) is None]


def _pythonpath(*folders: Path) -> str:
    """``PYTHONPATH`` with ``folders`` in front of what it held."""
    entries = [str(folder) for folder in folders] + [os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(entry for entry in entries if entry)


def run_with_runtime(argv: list[str], wheels_dir: Path) -> int:
    """Install the runtime's wheels into a temporary folder and run the runner again with it on the path."""
    from tools.runtime import install

    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels:
        raise RunnerError(
            f"this Python ({sys.executable}) cannot import {', '.join(missing_runtime())}, and {wheels_dir} "
            "holds no wheels: run `make runtime` on a machine with a network and bring _build/runtime/wheels "
            "along")
    with tempfile.TemporaryDirectory(prefix="book-runtime-") as target:
        started = time.perf_counter()
        install(wheels, Path(target))
        seconds = time.perf_counter() - started
        print(f"runtime: {len(wheels)} wheels installed into {target} in {seconds:.1f} s", flush=True)
        env = os.environ | {RUNTIME_ENV: target, "PYTHONPATH": _pythonpath(Path(target), REPO_ROOT)}
        return subprocess.run([sys.executable, "-m", "tools.execute", *argv], env=env).returncode


def describe_machine(profile: str) -> dict:
    """:func:`tools.edition.machine`, after checking the profile's name, asked of a separate Python so that
    this process never loads torch or touches the GPU (the kernels use it)."""
    code = ("import json, sys; from book.profiles import get_profile; from tools.edition import machine; "
            "get_profile(sys.argv[1]); print(json.dumps(machine()))")
    result = subprocess.run([sys.executable, "-c", code, profile], capture_output=True, text=True,
                            cwd=REPO_ROOT)
    if result.returncode != 0:
        raise RunnerError(f"checking the profile and the device failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cell_timeout(source: Path) -> int:
    """Seconds per cell: ``execute.timeout`` of the book's ``_config.yml``, as the site build uses it."""
    import yaml

    config = source / "_config.yml"
    if not config.is_file():
        return DEFAULT_TIMEOUT_S
    return int((yaml.safe_load(config.read_text()).get("execute") or {}).get("timeout", DEFAULT_TIMEOUT_S))


def failed_cell(source_path: Path, root: Path, notebook, index: int | None, error: BaseException) -> str:
    """Which chapter and cell failed, and how: ``chapters/x.md: code cell 7, line 120 ('fit(...)') failed:
    ...``."""
    where = source_path.relative_to(root).as_posix()
    if index is not None:
        cell = notebook.cells[index]
        number = sum(1 for other in notebook.cells[: index + 1] if other.cell_type == "code")
        text = source_path.read_text(encoding="utf-8")
        position = text.find(cell.source) if cell.source else -1
        line = f", line {text[:position].count(chr(10)) + 1}" if position >= 0 else ""
        first = (cell.source.strip().splitlines() or [""])[0]
        where += f": code cell {number}{line} ({first[:60]!r})"
    return f"{where} failed: {error}"


def prepare_output(out: Path) -> Path:
    """The staging folder ``<out>.partial``, empty; refuses an ``out`` that holds anything but a run."""
    from tools.edition import MANIFEST

    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise RunnerError(f"{out} is not empty and holds no {MANIFEST}: give a new folder (or an earlier "
                          "run's output, which is replaced)")
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def execute(out: Path, profile: str, source: Path = REPO_ROOT, timeout: int | None = None) -> Path:
    """Execute every chapter of the book in ``source`` into ``out``; return the manifest's path.

    Raises:
        RunnerError: for the gpu profile without CUDA, a folder that is not the runner's, or a cell error
            (naming the chapter and the cell; the notebooks executed so far stay in ``<out>.partial``).
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from tools.edition import (
        MANIFEST,
        SIZE_BUDGET_BYTES,
        ChapterRecord,
        Manifest,
        book_hashes,
        chapter_sources,
    )

    source, out = source.resolve(), out.resolve()
    chapters = chapter_sources(source)
    if not chapters:
        raise RunnerError(f"{source / '_toc.yml'} lists no chapters")
    machine = describe_machine(profile)
    if profile == "gpu" and not machine["cuda"]:
        raise RunnerError(f"the gpu profile needs CUDA, and this machine has none ({machine['device']}); "
                          "choose another with BOOK_PROFILE (smoke, cpu)")
    staging = prepare_output(out)
    # What the kernels inherit: the profile, the build's switches, where `book` is and where results go.
    os.environ.update({"BOOK_PROFILE": profile, "BOOK_BUILD": "1", "PYTHONPATH": _pythonpath(REPO_ROOT),
                       "BOOK_RESULTS": str(staging / "results")})
    timeout = timeout or cell_timeout(source)
    print(f"executing {len(chapters)} chapters in profile {profile!r} on {machine['device']} (torch "
          f"{machine['torch']}, Python {machine['python']}) into {out}", flush=True)
    records = []
    current: dict[str, int] = {}  # the index of the cell being executed, for an error message
    for name, path in chapters.items():
        text = path.read_bytes()  # hashed as executed, whatever happens to the file meanwhile
        notebook = jupytext.reads(text.decode("utf-8"), fmt="md:myst")
        current.clear()
        client = NotebookClient(
            notebook, timeout=timeout, allow_errors=False, record_timing=False,
            resources={"metadata": {"path": str(path.parent)}},
            on_cell_execute=lambda cell, cell_index: current.update(index=cell_index),
        )
        started = time.perf_counter()
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
            partial = staging / f"{name}.ipynb"
            partial.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, partial)
            raise RunnerError(failed_cell(path, source, notebook, current.get("index"), error)
                              + f"\n(the notebooks executed so far are in {staging})") from None
        seconds = time.perf_counter() - started
        notebook_path = staging / f"{name}.ipynb"
        notebook_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, notebook_path)
        print(f"{seconds:8.1f} s  {notebook_path.stat().st_size / 1e6:6.2f} MB  {name}", flush=True)
        records.append(ChapterRecord(name=name, source=path.relative_to(source).as_posix(),
                                     source_sha256=hashlib.sha256(text).hexdigest(), notebook=f"{name}.ipynb",
                                     seconds=round(seconds, 2)))
    manifest = Manifest(profile=profile, device=machine["device"], torch=machine["torch"],
                        python=machine["python"], date=datetime.now(UTC).isoformat(timespec="seconds"),
                        chapters=tuple(records), book_sha256=book_hashes(REPO_ROOT))
    (staging / MANIFEST).write_text(manifest.to_json())
    total = sum(record.seconds for record in records)
    size = sum((staging / record.notebook).stat().st_size for record in records)
    print(f"{total:8.1f} s  {size / 1e6:6.2f} MB  in all", flush=True)
    if size > SIZE_BUDGET_BYTES:
        print(f"warning: the notebooks take {size / 1e6:.1f} MB, over the {SIZE_BUDGET_BYTES / 1e6:.0f} MB "
              "that `make import` accepts", file=sys.stderr)
    if not (staging / "results" / f"{profile}.json").is_file():
        print(f"warning: the chapters recorded no results (no results/{profile}.json)", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out / MANIFEST


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m tools.execute", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the notebooks and manifest.json")
    parser.add_argument("--profile", default=None,
                        help="smoke, cpu or gpu (default: $BOOK_PROFILE, else gpu)")
    parser.add_argument("--source", type=Path, default=REPO_ROOT, help="the book's folder (with _toc.yml)")
    parser.add_argument("--wheels", type=Path, default=REPO_ROOT / "_build" / "runtime" / "wheels",
                        help="the runtime's wheels, installed when this Python lacks Jupyter's packages")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: _config.yml's)")
    args = parser.parse_args(argv)
    profile = (args.profile or os.environ.get("BOOK_PROFILE", "").strip() or "gpu").lower()
    try:
        if missing_runtime():
            if os.environ.get(RUNTIME_ENV):
                raise RunnerError(f"the runtime in {os.environ[RUNTIME_ENV]} lacks "
                                  f"{', '.join(missing_runtime())}")
            return run_with_runtime(argv, args.wheels.resolve())
        manifest = execute(args.out, profile, args.source, args.timeout)
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {manifest.parent}; bring it to a machine with Jupyter Book and run `make import "
          f"FROM={manifest.parent.name}` there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
