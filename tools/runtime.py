"""The runner's own small runtime: wheels of a notebook kernel and client, for a machine without them.

The machines that execute the gpu edition have Python, a CUDA torch and the book's numerical packages, but
no Jupyter (no IPython, ipykernel, jupyter_client, nbclient, nbformat, jupytext, pyzmq, tornado, traitlets)
and no network. ``make runtime`` (``python -m tools.runtime``) downloads, here, the wheels of ``ipykernel``,
``nbclient`` and ``jupytext`` with everything they need, for CPython 3.12 on x86-64 Linux, at the versions
installed in this environment (so the runner there runs what the tests run here); ``tools.execute`` installs
them there into a temporary folder with ``pip install --no-index --no-deps --target`` and puts that folder on
``PYTHONPATH``, for itself and for the kernels it starts.

Left out, to keep what travels small: the debugger (``debugpy``) and tab completion (``jedi``, ``parso``),
which ipykernel and IPython import only when a front end asks for them, and a runner never does.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WHEELS_DIR = REPO_ROOT / "_build" / "runtime" / "wheels"
# What the runner imports; pip adds what these need.
PACKAGES = ("ipykernel", "nbclient", "jupytext")
LEFT_OUT = {"debugpy": "the debugger", "jedi": "tab completion", "parso": "tab completion (jedi's parser)"}
# The wheels travel with the repository to the GPU machine, 64 MiB in all, together with anything else
# carried there; this runtime is about 8 MiB.
BUDGET_MIB = 16
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def _distribution(wheel: Path) -> str:
    """The normalized distribution name of a wheel file (``jupyter_client-8.10.0-py3-none-any.whl``)."""
    return wheel.name.split("-")[0].lower().replace(".", "_")


def download_command(dest: Path, constraints: Path, python_version: str = PYTHON_VERSION) -> list[str]:
    """The ``pip download`` command line for the runtime's wheels, binary only, for another interpreter."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    return [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
            "--python-version", python_version, "--implementation", "cp", *platforms,
            "--constraint", str(constraints), "--dest", str(dest), *PACKAGES]


def download(dest: Path = WHEELS_DIR, python_version: str = PYTHON_VERSION,
             budget_mib: float = BUDGET_MIB) -> list[Path]:
    """Download the runtime's wheels into ``dest`` (replacing what is there); return them.

    Raises:
        RuntimeError: when pip fails, or when the wheels exceed ``budget_mib`` (the folder is then not
            written).
    """
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".wheels-") as tmp:
        staging = Path(tmp) / "wheels"
        # The versions installed here, so the runner executes with what the tests exercise.
        frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                                check=True, capture_output=True, text=True).stdout
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(frozen)
        result = subprocess.run(download_command(staging, constraints, python_version),
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip download failed:\n{result.stderr[-3000:]}")
        for wheel in staging.glob("*.whl"):
            if _distribution(wheel) in LEFT_OUT:
                wheel.unlink()
        wheels = sorted(staging.glob("*.whl"))
        total = sum(wheel.stat().st_size for wheel in wheels)
        for wheel in wheels:
            print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
        print(f"{total / 2**20:7.2f} MiB  in {len(wheels)} wheels for CPython {python_version} "
              f"(budget {budget_mib} MiB; left out: {', '.join(sorted(LEFT_OUT))})")
        if total > budget_mib * 2**20:
            raise RuntimeError(f"the runtime's wheels take {total / 2**20:.1f} MiB, over the budget of "
                               f"{budget_mib} MiB: see which wheel grew above, and leave it out or raise "
                               f"tools.runtime.BUDGET_MIB")
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    return sorted(dest.glob("*.whl"))


def install(wheels: list[Path], target: Path) -> None:
    """Install ``wheels`` into the folder ``target`` (for ``PYTHONPATH``), offline and without resolving.

    Raises:
        RuntimeError: when pip is missing or refuses a wheel (e.g. one built for another Python).
    """
    if not wheels:
        raise RuntimeError("no wheels to install")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
         "--disable-pip-version-check", "--target", str(target), *map(str, wheels)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"installing the runtime's wheels with {sys.executable} -m pip failed "
                           f"(they are built for CPython {PYTHON_VERSION}):\n{result.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.runtime", description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=WHEELS_DIR, help="folder for the wheels")
    parser.add_argument("--python-version", default=PYTHON_VERSION, help="CPython version of the target")
    parser.add_argument("--budget-mib", type=float, default=BUDGET_MIB, help="largest total size allowed")
    args = parser.parse_args(argv)
    try:
        wheels = download(args.dest, args.python_version, args.budget_mib)
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(wheels)} wheels in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
