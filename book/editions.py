"""The two editions' headline numbers side by side, for the preface's profile table.

The ``cpu`` edition's numbers are those of the latest ``make book`` on this machine
(``_build/results/cpu.json``, written by the chapters through :mod:`book.results`); the ``gpu`` edition's are
committed with its notebooks (``editions/gpu/results/gpu.json``, with the device, torch version and date in
``editions/gpu/manifest.json``).
In a chapter::

    from IPython.display import Markdown
    from book.editions import editions_table
    Markdown(editions_table())
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from book.results import table

REPO_ROOT = Path(__file__).resolve().parent.parent


def _numbers(path: Path) -> dict[str, float]:
    """The metrics of a results file; empty when it is missing or not an object of finite numbers."""
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(results, dict):
        return {}
    return {name: value for name, value in results.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)}


def editions_table(root: Path = REPO_ROOT) -> str:
    """A Markdown table of the cpu and gpu editions' headline numbers (one row per metric), followed by where
    the gpu numbers were computed; an edition without recorded numbers gets no column.

    Args:
        root: the repository's folder (``_build/results/cpu.json`` and ``editions/gpu/`` below it).
    """
    columns = {"cpu": _numbers(root / "_build" / "results" / "cpu.json"),
               "gpu": _numbers(root / "editions" / "gpu" / "results" / "gpu.json")}
    columns = {name: numbers for name, numbers in columns.items() if numbers}
    if not columns:
        return ("No headline numbers are recorded yet: `make book` records the cpu edition's, and the gpu "
                "edition's come with its notebooks in `editions/gpu/`.")
    lines = [table(columns)]
    if "gpu" in columns:
        try:
            manifest = json.loads((root / "editions" / "gpu" / "manifest.json").read_text())
            lines.append(f"The `gpu` column was computed on {manifest['device']} with torch "
                         f"{manifest['torch']}, {manifest['date'][:10]}.")
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            pass
    if "cpu" in columns:
        lines.append("The `cpu` column is the latest `make book` on this machine.")
    return "\n\n".join(lines)
