"""Executing on one machine, rendering on another (tools/execute.py, tools/edition.py, tools/site.py).

The runner executes a one-page book in the smoke profile in a separate process whose Python cannot import
Jupyter Book (a virtual environment holding every package of ours except Jupyter Book, Sphinx, myst-nb and
jupyter-cache, and not `book`, which the runner puts on the path). Its folder is imported and rendered, and a
spy in every Python process the tests start (a ``sitecustomize`` module) records each kernel launched: the
runner launches one, the rendering none.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from html import escape
from pathlib import Path

import pytest
import torch
from test_site_build import GOOD, make_book

from tools.edition import (
    MANIFEST,
    ChapterRecord,
    EditionError,
    Manifest,
    check_fresh,
    check_size,
    import_edition,
    prime_cache,
    publish_plan,
)
from tools.execute import prepare_output
from tools.site import build, executing_nothing
from tools.sphinx_ext import edition_line

from chapter_text import MYST_HEADER

ROOT = Path(__file__).resolve().parent.parent
# What the GPU machine lacks; `book` and the repository's packages reach the runner through its PYTHONPATH.
NOT_ON_THE_GPU_MACHINE = ("jupyter_book", "jupyter_cache", "myst_nb", "myst_parser", "sphinx",
                          "pydata_sphinx", "docutils", "pybtex_docutils", "flow_book", "__editable__")
PAGE = GOOD + """
```{code-cell} ipython3
import importlib.util

import book
from book.results import record

record("smoke", {"test.answer": 42})
print("jupyter_book importable:", importlib.util.find_spec("jupyter_book") is not None)
print("book from", book.__file__)
```

```{code-cell} ipython3
:tags: [raises-exception]
raise ValueError("a cell tagged raises-exception may fail")
```
"""
# Logs every kernel launch of the process (and of the processes it starts) to $KERNEL_LAUNCH_LOG.
SPY = """
import os
import subprocess

_popen_init = subprocess.Popen.__init__


def _logging_init(self, args, *rest, **kwargs):
    log = os.environ.get("KERNEL_LAUNCH_LOG")
    command = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
    if log and "ipykernel_launcher" in command:
        with open(log, "a") as handle:
            handle.write(command + "\\n")
    _popen_init(self, args, *rest, **kwargs)


subprocess.Popen.__init__ = _logging_init
"""


def without_jupyter_book(folder: Path) -> Path:
    """A virtual environment with this one's packages except those the GPU machine lacks; its Python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = folder / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    for entry in ours.iterdir():
        if not entry.name.lower().replace("-", "_").startswith(NOT_ON_THE_GPU_MACHINE):
            (theirs / entry.name).symlink_to(entry)
    return folder / "bin" / "python"


def kernel_launches(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def spied_env(tmp: Path, log: Path) -> dict[str, str]:
    spy = tmp / "spy"
    spy.mkdir(exist_ok=True)
    (spy / "sitecustomize.py").write_text(SPY)
    env = {k: v for k, v in os.environ.items() if k not in ("BOOK_PROFILE", "PYTHONPATH")}
    return env | {"PYTHONPATH": str(spy), "KERNEL_LAUNCH_LOG": str(log)}


# The runner's process asserts first that Jupyter Book is out of its reach.
RUNNER = """
import importlib.util, sys
assert importlib.util.find_spec("jupyter_book") is None, "the runner can import jupyter_book"
from tools.execute import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A one-page book and the runner's folder for it (smoke profile), executed without Jupyter Book."""
    tmp = tmp_path_factory.mktemp("editions")
    folder = make_book(tmp / "book", PAGE)
    python = without_jupyter_book(tmp / "venv")
    log = tmp / "runner-kernels.log"
    result = subprocess.run(
        [str(python), "-c", RUNNER, "--out", str(tmp / "run"), "--profile", "smoke", "--source", str(folder)],
        capture_output=True, text=True, cwd=ROOT, env=spied_env(tmp, log),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(kernel_launches(log)) == 1, "one kernel per chapter, which the spy must see"
    return folder, tmp / "run", result


def outputs(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "".join("".join(output.get("text", "")) + output.get("evalue", "")
                   for cell in cells for output in cell.get("outputs", []))


def test_the_runner_executes_without_jupyter_book(executed):
    folder, run, _ = executed
    printed = outputs(run / "chapters" / "page.ipynb")
    assert "built in profile smoke" in printed
    assert "jupyter_book importable: False" in printed
    assert f"book from {ROOT / 'book' / '__init__.py'}" in printed  # from the repository, not installed
    assert "a cell tagged raises-exception may fail" in printed
    manifest = Manifest.read(run)
    assert (manifest.profile, manifest.torch) == ("smoke", torch.__version__)
    assert manifest.device and re.fullmatch(r"\d{4}-\d\d-\d\dT.*", manifest.date)
    [chapter] = manifest.chapters
    assert chapter.name == "chapters/page" and chapter.seconds > 0
    assert chapter.source_sha256 == hashlib.sha256((folder / "chapters" / "page.md").read_bytes()).hexdigest()
    assert json.loads((run / "results" / "smoke.json").read_text()) == {"test.answer": 42.0}


@pytest.fixture(scope="module")
def rendered(executed, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, list[str]]:
    """The runner's folder imported into the book and rendered by a process whose kernel launches are
    logged."""
    folder, run, _ = executed
    import_edition(run, folder)
    tmp = tmp_path_factory.mktemp("render")
    log = tmp / "render-kernels.log"
    code = ("import sys; from pathlib import Path; from tools.site import build; "
            f"sys.exit(build('smoke', Path({str(folder / 'site')!r}), source=Path({str(folder)!r}), "
            "from_edition=True))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env=spied_env(tmp, log))
    return folder, result, kernel_launches(log)


def test_the_imported_edition_renders_without_starting_a_kernel(rendered):
    folder, result, launches = rendered
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert launches == [], f"rendering an edition started kernels: {launches}"
    html = (folder / "site" / "chapters" / "page.html").read_text()
    assert "built in profile smoke" in html and "jupyter_book importable: False" in html
    downloaded = outputs(folder / "site" / "_sources" / "chapters" / "page.ipynb")
    assert "first of two lines" in downloaded and "built in profile smoke" in downloaded


def test_every_page_states_the_edition_it_comes_from(rendered):
    folder, result, _ = rendered
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = Manifest.read(folder / "editions" / "smoke")
    line = edition_line(manifest.banner(), manifest.day)
    assert manifest.device in line and manifest.torch in line and manifest.day in line
    html = (folder / "site" / "chapters" / "page.html").read_text()
    assert html.count(escape(line)) == 1, f"{line!r} is not on the page"


def test_a_changed_chapter_is_refused_by_name(rendered, tmp_path):
    folder, _, _ = rendered
    copy = tmp_path / "book"
    shutil.copytree(folder, copy, symlinks=True, ignore=shutil.ignore_patterns("_build", "site"))
    page = copy / "chapters" / "page.md"
    page.write_text(page.read_text() + "\nA sentence added after the execution.\n")
    with pytest.raises(EditionError, match=r"chapters/page\.md changed since it was executed") as refused:
        build("smoke", tmp_path / "site", source=copy, from_edition=True)
    assert "make execute OUT=" in str(refused.value) and "make import FROM=" in str(refused.value)
    assert not (tmp_path / "site").exists()
    with pytest.raises(EditionError, match=r"chapters/page\.md changed since it was executed"):
        import_edition(copy / "editions" / "smoke", copy)


def test_a_chapter_never_executed_is_refused_by_name(rendered, tmp_path):
    folder, _, _ = rendered
    copy = tmp_path / "book"
    shutil.copytree(folder, copy, symlinks=True, ignore=shutil.ignore_patterns("_build", "site"))
    (copy / "chapters" / "second.md").write_text(MYST_HEADER + "\n# Second\n\n```{code-cell}\n1\n```\n")
    (copy / "_toc.yml").write_text("format: jb-book\nroot: chapters/page\n"
                                   "chapters:\n  - file: chapters/second\n")
    with pytest.raises(EditionError, match=r"chapters/second\.md was not executed in this edition"):
        check_fresh(copy / "editions" / "smoke", copy)


def test_without_an_edition_the_gpu_build_says_how_to_make_one(tmp_path):
    folder = make_book(tmp_path / "book", GOOD)
    with pytest.raises(EditionError, match=r"no gpu edition .*make execute OUT=.*make import FROM="):
        build("gpu", tmp_path / "site", source=folder)


def test_a_failing_cell_stops_the_run_naming_chapter_and_cell(tmp_path):
    page = GOOD + "\n```{code-cell} ipython3\nx = 1\n1 / 0\n```\n"
    folder = make_book(tmp_path / "book", page)
    result = subprocess.run(
        [sys.executable, "-m", "tools.execute", "--out", str(tmp_path / "run"), "--profile", "smoke",
         "--source", str(folder)],
        capture_output=True, text=True, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "BOOK_PROFILE"},
    )
    assert result.returncode == 1
    line = page.splitlines().index("x = 1") + 1
    assert f"chapters/page.md: code cell 3, line {line} ('x = 1') failed" in result.stderr, result.stderr
    assert "ZeroDivisionError" in result.stderr
    assert not (tmp_path / "run").exists() and (tmp_path / "run.partial").is_dir()


def test_the_runner_never_overwrites_a_folder_that_is_not_its_own(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="not empty"):
        prepare_output(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / MANIFEST).write_text("{}")  # an earlier run's folder is replaced
    assert prepare_output(tmp_path) == tmp_path.with_name(tmp_path.name + ".partial")


def tiny_edition(folder: Path, size: int) -> Manifest:
    """An edition of one notebook of ``size`` bytes (no chapter behind it)."""
    (folder / "chapters").mkdir(parents=True)
    (folder / "chapters" / "page.ipynb").write_bytes(b"x" * size)
    page = ChapterRecord(name="chapters/page", source="chapters/page.md", source_sha256="0" * 64,
                         notebook="chapters/page.ipynb", seconds=1.0)
    return Manifest(profile="gpu", device="a GPU", torch="2.11.0", python="3.12.0",
                    date="2026-11-27T10:00:00+00:00", chapters=(page,))


def test_an_edition_over_the_size_budget_is_refused(tmp_path):
    manifest = tiny_edition(tmp_path, 2000)
    assert check_size(tmp_path, manifest, budget=2000) == 2000
    with pytest.raises(EditionError, match=r"(?s)over the budget .*chapters/page\.ipynb"):
        check_size(tmp_path, manifest, budget=1999)


def test_a_manifest_round_trips_and_a_broken_one_is_refused(tmp_path):
    manifest = tiny_edition(tmp_path, 1)
    (tmp_path / MANIFEST).write_text(manifest.to_json())
    assert Manifest.read(tmp_path) == manifest
    (tmp_path / MANIFEST).write_text(json.dumps({"profile": "gpu", "format": 1}))
    with pytest.raises(EditionError, match="not a valid manifest"):
        Manifest.read(tmp_path)
    with pytest.raises(EditionError, match="not the output of `make execute`"):
        Manifest.read(tmp_path / "elsewhere")


@pytest.mark.parametrize("requested, gpu_problem, expected", [
    (None, None, "gpu"),
    ("gpu", None, "gpu"),
    ("cpu", None, "cpu"),
    ("cpu", "stale: chapters/02_flow_matching.md", "cpu"),
])
def test_publish_plan_chooses_the_gpu_edition_unless_asked(requested, gpu_problem, expected):
    assert publish_plan(requested, gpu_problem) == expected


@pytest.mark.parametrize("requested", [None, "gpu"])
def test_publish_plan_names_the_stale_chapters_and_publishes_nothing(requested):
    problem = "the gpu edition is stale:\n  chapters/02_flow_matching.md changed since it was executed"
    with pytest.raises(EditionError) as refused:
        publish_plan(requested, problem)
    assert "chapters/02_flow_matching.md" in str(refused.value)
    assert "make publish EDITION=cpu" in str(refused.value)


def test_publish_plan_refuses_an_unknown_edition():
    with pytest.raises(EditionError, match="choose gpu .* or cpu"):
        publish_plan("tpu", None)


def test_a_notebook_whose_code_differs_from_its_chapter_is_refused(rendered, tmp_path):
    # The source's hash matches, yet the notebook holds other code: the cache cannot serve the chapter.
    folder, _, _ = rendered
    edition = tmp_path / "edition"
    shutil.copytree(folder / "editions" / "smoke", edition)
    notebook = json.loads((edition / "chapters" / "page.ipynb").read_text())
    next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")["source"] = "print('other code')"
    (edition / "chapters" / "page.ipynb").write_text(json.dumps(notebook))
    with pytest.raises(EditionError, match="does not hold the code of chapters/page.md"):
        prime_cache(edition, Manifest.read(edition), tmp_path / "cache", folder)


def test_while_an_edition_renders_nothing_can_execute(tmp_path):
    from myst_nb.core.execute import cache

    with executing_nothing(tmp_path), pytest.raises(RuntimeError, match="about to be executed"):
        cache.single_nb_execution(None, cwd=str(tmp_path), allow_errors=False, timeout=10)
