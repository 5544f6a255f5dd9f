"""The nbval harness catches a changed formula: stored outputs of checked cells are compared on every run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nbval_harness
from chapter_text import MYST_HEADER

CHAPTER = MYST_HEADER + """
# Variance of a path

```{code-cell} ipython3
def variance_at(t):
    return (1 - t) ** 2 + t ** 2
```

```{code-cell} ipython3
:tags: [nbval-check-output]

print(f"variance at t = 1/2: {variance_at(0.5):.4f}")
```

```{code-cell} ipython3
print("a cell that is not compared", id(object()))
```
"""


def run_nbval(folder: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(folder),
        "--nbval-lax",
        "--nbval-current-env",
        "-q",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::DeprecationWarning",
    ]
    return subprocess.run(
        command, capture_output=True, text=True, env=os.environ | {"PYTHONWARNINGS": "ignore"}
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    base = tmp_path_factory.mktemp("harness")
    chapter = base / "chapters" / "01_variance.md"
    chapter.parent.mkdir()
    chapter.write_text(CHAPTER)
    stored = base / "stored"
    nbval_harness.record(chapter, stored)
    return chapter, stored, base


def test_record_keeps_only_checked_cells(recorded):
    chapter, stored, _ = recorded

    cells = json.loads(nbval_harness.stored_path(chapter, stored).read_text())["cells"]
    assert len(cells) == 1
    assert cells[0]["outputs"][0]["text"] == "variance at t = 1/2: 0.5000\n"


def test_unchanged_chapter_passes_and_changed_formula_fails(recorded):
    chapter, stored, base = recorded
    nbval_harness.prepare(chapter, base / "same", stored)
    same = run_nbval(base / "same")
    assert same.returncode == 0, same.stdout + same.stderr

    changed = base / "changed" / "chapters" / chapter.name
    changed.parent.mkdir(parents=True)
    changed.write_text(CHAPTER.replace("(1 - t) ** 2 + t ** 2", "(1 - t) ** 2 + t"))
    nbval_harness.prepare(changed, base / "changed-nb", stored)
    result = run_nbval(base / "changed-nb")
    assert result.returncode != 0
    assert "0.5000" in result.stdout and "0.7500" in result.stdout, result.stdout


def test_changed_checked_cell_asks_for_a_new_recording(recorded, tmp_path):
    chapter, stored, _ = recorded
    edited = tmp_path / chapter.name
    edited.write_text(CHAPTER.replace("variance at t = 1/2", "variance at one half"))
    with pytest.raises(RuntimeError, match="make nbval-outputs"):
        nbval_harness.prepare(edited, tmp_path / "out", stored)


def test_every_chapter_has_its_recorded_outputs(tmp_path):
    for chapter in nbval_harness.chapters():
        assert nbval_harness.prepare(chapter, tmp_path).exists()
