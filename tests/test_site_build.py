"""The website build (tools/site.py): strict, cached per profile, never mixing profiles.

Each test builds a one-page book in a temporary folder, in a subprocess (Sphinx and the kernel keep global
state), with the project's own _config.yml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pytest

from tools.edition import machine
from tools.site import build_key, site_key
from tools.sphinx_ext import edition_line

from chapter_text import MYST_HEADER

ROOT = Path(__file__).resolve().parent.parent
HEADER = MYST_HEADER + """
# A page
"""
GOOD = (
    HEADER
    + """
```{code-cell} ipython3
import os
print("built in profile", os.environ["BOOK_PROFILE"])
```

```{code-cell} ipython3
import sys
import time

print("first of two", "lines")  # the output differs from the source
sys.stdout.flush()
time.sleep(0.5)  # the kernel sends the two lines as two stream outputs
print("second of two", "lines")
```
"""
)


def make_book(folder: Path, page: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "references.bib"):
        shutil.copy(ROOT / name, folder / name)
    (folder / "chapters" / "assets").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "chapters" / "assets" / "favicon.png", folder / "chapters" / "assets" / "favicon.png")
    (folder / "_vendor").symlink_to(ROOT / "_vendor")
    (folder / "_toc.yml").write_text("format: jb-book\nroot: chapters/page\n")
    (folder / "chapters" / "page.md").write_text(page)
    return folder


def run_build(folder: Path, profile: str) -> subprocess.CompletedProcess:
    code = (
        "import sys; from pathlib import Path; from tools.site import build; "
        f"sys.exit(build({profile!r}, Path({str(folder / 'site')!r}), source=Path({str(folder)!r})))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "BOOK_PROFILE"},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    folder = make_book(tmp_path_factory.mktemp("book"), GOOD)
    # A reader's scratch notebook in a hidden folder (a converted chapter, say) is not part of the book: read,
    # its broken reference would fail the strict build.
    (folder / ".scratch").mkdir()
    (folder / ".scratch" / "stray.md").write_text(HEADER + "\nSee {doc}`no-such-page`.\n")
    return folder, run_build(folder, "smoke")


def test_a_good_page_builds(built):
    folder, result = built
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (folder / "site" / ".scratch").exists()
    html = (folder / "site" / "chapters" / "page.html").read_text()
    assert "built in profile smoke" in html


def test_every_page_states_its_edition_device_torch_and_date(built):
    # Built here: this machine's device, the installed torch, and the day the outputs were computed.
    folder, result = built
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    described = machine()
    line = edition_line({"profile": "smoke", "device": described["device"], "torch": described["torch"]},
                        datetime.now(UTC).date().isoformat())
    html = (folder / "site" / "chapters" / "page.html").read_text()
    assert html.count(escape(line)) == 1, f"{line!r} is not on the page"


def downloaded_stream_text(folder: Path) -> str:
    """Everything the page's downloadable notebook printed."""
    notebook = json.loads((folder / "site" / "_sources" / "chapters" / "page.ipynb").read_text())
    return "".join(
        "".join(output.get("text", ""))
        for cell in notebook["cells"]
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def test_the_downloadable_notebook_has_each_printed_line_once(built):
    folder, result = built
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    printed = downloaded_stream_text(folder)
    assert printed.count("first of two lines") == 1, printed
    assert printed.count("second of two lines") == 1, printed
    html = (folder / "site" / "chapters" / "page.html").read_text()
    assert html.count("second of two lines") == 1


def test_profiles_have_their_own_cache_and_rebuilds_execute_nothing(built):
    folder, _ = built
    cpu = run_build(folder, "cpu")
    assert cpu.returncode == 0, cpu.stderr[-3000:]
    assert "Executing notebook" in cpu.stdout + cpu.stderr, "the cpu build reused the smoke outputs"
    assert "built in profile cpu" in (folder / "site" / "chapters" / "page.html").read_text()
    keys = sorted(p.name for p in (folder / "_build" / "cache").iterdir())
    assert [k.split("-")[0] for k in keys] == ["cpu", "smoke"]

    again = run_build(folder, "smoke")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Executing notebook" not in again.stdout + again.stderr, "an unchanged rebuild re-executed"
    assert "built in profile smoke" in (folder / "site" / "chapters" / "page.html").read_text()


def test_a_prose_edit_reuses_the_outputs_and_the_download_keeps_them(built):
    # The page is read again, its outputs come from the execution cache, and myst-nb writes its copy of the
    # notebook without them: the download must still carry every printed line, once.
    folder, _ = built
    page = folder / "chapters" / "page.md"
    page.write_text(page.read_text() + "\nA sentence added after the first build.\n")
    result = run_build(folder, "smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Executing notebook" not in result.stdout + result.stderr, "a prose edit re-executed the page"
    html = (folder / "site" / "chapters" / "page.html").read_text()
    assert "A sentence added after the first build." in html
    printed = downloaded_stream_text(folder)
    for line in ("built in profile smoke", "first of two lines", "second of two lines"):
        assert printed.count(line) == 1, printed


def test_a_cell_error_fails_the_build(tmp_path):
    folder = make_book(tmp_path, HEADER + "\n```{code-cell} ipython3\n1 / 0\n```\n")
    result = run_build(folder, "smoke")
    assert result.returncode != 0
    assert "ZeroDivisionError" in result.stdout + result.stderr
    assert not (folder / "site").exists(), "a failed build must not publish a site"


def test_a_sphinx_warning_fails_the_build(tmp_path):
    folder = make_book(tmp_path, GOOD + "\nSee {ref}`a-label-that-does-not-exist`.\n")
    result = run_build(folder, "smoke")
    assert result.returncode != 0
    assert "a-label-that-does-not-exist" in result.stdout + result.stderr


def key_project(root: Path) -> Path:
    """A project skeleton with what the two keys hash: ``book/``, ``tools/`` and ``requirements.txt``."""
    for package in ("book", "tools"):
        (root / package).mkdir()
        (root / package / "__init__.py").write_text(f'"""{package}"""\n')
    (root / "book" / "module.py").write_text("x = 1\n")
    (root / "tools" / "sphinx_ext.py").write_text("hook = 1\n")
    (root / "requirements.txt").write_text("torch==2.13.0\n")
    return root


def test_build_key_depends_on_profile_and_every_book_module(tmp_path):
    root = key_project(tmp_path)
    first = build_key("smoke", root)
    assert build_key("cpu", root) != first and first.startswith("smoke-")
    (root / "book" / "module.py").write_text("x = 2\n")
    second = build_key("smoke", root)
    assert second != first
    # A module of book/ that no list names (a new runtime module, a new export) is part of the key too.
    (root / "book" / "newly_added.py").write_text("y = 1\n")
    assert build_key("smoke", root) != second


def test_requirements_change_the_execution_key_not_the_rendering_key(tmp_path):
    root = key_project(tmp_path)
    execution, rendering = build_key("smoke", root), site_key(root)
    (root / "requirements.txt").write_text("torch==2.14.0\n")
    assert build_key("smoke", root) != execution
    assert site_key(root) == rendering


def test_a_book_module_changes_the_execution_key_not_the_rendering_key(tmp_path):
    root = key_project(tmp_path)
    execution, rendering = build_key("smoke", root), site_key(root)
    (root / "book" / "module.py").write_text("x = 2\n")
    assert build_key("smoke", root) != execution
    assert site_key(root) == rendering


@pytest.mark.parametrize("tool", ["sphinx_ext.py", "__init__.py", "new_tool.py"])
def test_the_build_tools_change_the_rendering_key_not_the_execution_key(tmp_path, tool):
    root = key_project(tmp_path)
    execution, rendering = build_key("smoke", root), site_key(root)
    (root / "tools" / tool).write_text("hook = 2\n")
    assert build_key("smoke", root) == execution
    assert site_key(root) != rendering and rendering.startswith("site-")
