"""The build's headline numbers: one flat JSON object per profile, written by the chapters as they execute.

Each chapter records what a reader would quote from it (FIDs with their floors, accuracies, the seconds it
took) under a dotted name, ``"ch03.fm_cond_fid_16nfe"``. The file is ``_build/results/<profile>.json``
(``$BOOK_RESULTS`` names another folder), merged key by key and written atomically, so a chapter re-executed
alone updates its own keys and keeps the others. ``make results`` (``python -m book.results``) prints the
files as tables; the README's and the preface's tables come from them.

Usage, in a chapter::

    record(profile.name, {"ch03.fid_floor": fid_floor, "seconds.03_unets_and_images": elapsed})
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

RESULTS_ENV = "BOOK_RESULTS"
REPO_ROOT = Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    """``$BOOK_RESULTS`` if set, else ``_build/results`` in the repository."""
    return Path(os.environ.get(RESULTS_ENV) or REPO_ROOT / "_build" / "results")


def results_path(profile: str) -> Path:
    """The results file of ``profile``."""
    return results_dir() / f"{profile}.json"


def load(profile: str) -> dict[str, float]:
    """The recorded numbers of ``profile`` (empty when nothing was recorded yet).

    Raises:
        ValueError: when the file is not a JSON object of numbers (say which file, and how to start afresh).
    """
    path = results_path(profile)
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and build again") from None
    if not isinstance(results, dict) or not all(isinstance(v, int | float) for v in results.values()):
        raise ValueError(f"{path} must hold one object of metric name -> number; delete it and build again")
    return results


def record(profile: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """Merge ``metrics`` (name -> finite number) into the results of ``profile``; return the whole file.

    Raises:
        ValueError: for a name without a dot-separated prefix (``"ch03.x"``) or a value that is not a finite
            number: a NaN in the results would read as a measurement.
    """
    for name, value in metrics.items():
        if "." not in name or not name.split(".")[0]:
            raise ValueError(f"metric names are dotted, prefixed by their chapter (e.g. 'ch03.fid_floor'); "
                             f"got {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"metric {name!r} must be a finite number, got {value!r}")
    results = load(profile) | {name: float(value) for name, value in metrics.items()}
    path = results_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(dict(sorted(results.items())), handle, indent=1)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return results


def table(columns: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table: one row per metric, one column per results file (e.g. per profile)."""
    names = sorted({name for results in columns.values() for name in results})
    lines = ["| metric | " + " | ".join(f"`{column}`" for column in columns) + " |",
             "| --- |" + " ---: |" * len(columns)]
    for name in names:
        cells = [_format(results[name]) if name in results else "" for results in columns.values()]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return f"{int(value)}"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m book.results", description="Print the recorded results.")
    parser.add_argument("profiles", nargs="*", help="profiles to show (default: every file in the folder)")
    args = parser.parse_args(argv)
    profiles = args.profiles or sorted(path.stem for path in results_dir().glob("*.json"))
    if not profiles:
        print(f"no results in {results_dir()}: build the book first (`make book`)", file=sys.stderr)
        return 1
    try:
        columns = {profile: load(profile) for profile in profiles}
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    missing = [profile for profile, results in columns.items() if not results]
    if missing:
        print(f"no results recorded for {', '.join(missing)} in {results_dir()}", file=sys.stderr)
        return 1
    print(table(columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
