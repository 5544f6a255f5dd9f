"""nbval over the chapters, with stored outputs for the cells worth checking.

The chapters are MyST-Markdown without outputs, so the outputs nbval compares against are stored here, in
``tests/nbval/<chapter>.json``: only those of code cells tagged ``nbval-check-output`` (analytic answers,
shapes, rounded statistics), matched to their cell by its source. Every other cell must merely run without
error (``--nbval-lax``); figures and timings are never compared.

    python tests/nbval_harness.py record            # `make nbval-outputs`: execute (smoke), store outputs
    python tests/nbval_harness.py prepare --out DIR  # `make test`: write DIR/<chapter>.ipynb for nbval

A changed formula changes a checked cell's printed output, and nbval fails on the difference. A changed
*checked cell* has no stored output any more; ``prepare`` refuses to go on and says to re-record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import jupytext
import nbformat

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = REPO_ROOT / "chapters"
STORED = REPO_ROOT / "tests" / "nbval"
CHECK_TAG = "nbval-check-output"
RECORD_COMMAND = "make nbval-outputs"


def chapters(chapters_dir: Path = CHAPTERS) -> list[Path]:
    """The chapter notebooks, in order (``NN_*.md``)."""
    return sorted(chapters_dir.glob("[0-9][0-9]_*.md"))


def is_checked(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and CHECK_TAG in cell.get("metadata", {}).get("tags", [])


def clean_outputs(outputs: list[dict]) -> list[dict]:
    """Outputs without execution counts and metadata, consecutive streams of one name merged."""
    cleaned: list[dict] = []
    for output in outputs:
        output = {
            k: v for k, v in dict(output).items() if k not in ("execution_count", "metadata", "transient")
        }
        if output["output_type"] in ("execute_result", "display_data"):
            data = output["data"]
            output["data"] = {"text/plain": data["text/plain"]} if "text/plain" in data else {}
            output["metadata"] = {}
            if output["output_type"] == "execute_result":
                output["execution_count"] = None
        if output["output_type"] == "stream":
            text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
            if cleaned and cleaned[-1]["output_type"] == "stream" and cleaned[-1]["name"] == output["name"]:
                cleaned[-1]["text"] += text
                continue
            output["text"] = text
        cleaned.append(output)
    return cleaned


def stored_path(chapter: Path, stored_dir: Path = STORED) -> Path:
    return stored_dir / f"{chapter.stem}.json"


def record(chapter: Path, stored_dir: Path = STORED, timeout: int = 600) -> Path:
    """Execute ``chapter`` (in this process's profile) and store its checked cells' outputs."""
    from nbclient import NotebookClient

    notebook = jupytext.read(chapter, fmt="md:myst")
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(chapter.parent)}},
    ).execute()
    cells = [
        {"source": cell.source, "outputs": clean_outputs(cell.outputs)}
        for cell in notebook.cells
        if is_checked(cell)
    ]
    path = stored_path(chapter, stored_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"chapter": chapter.name, "cells": cells}, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def prepare(chapter: Path, out_dir: Path, stored_dir: Path = STORED) -> Path:
    """Write ``out_dir/<chapter>.ipynb``: the chapter's cells, with stored outputs on its checked cells.

    Raises:
        RuntimeError: a checked cell has no stored output (the cell is new or changed).
    """
    notebook = jupytext.read(chapter, fmt="md:myst")
    path = stored_path(chapter, stored_dir)
    stored = json.loads(path.read_text())["cells"] if path.exists() else []
    by_source = {cell["source"]: cell["outputs"] for cell in stored}
    missing = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if is_checked(cell):
            if cell.source not in by_source:
                missing.append(cell.source.splitlines()[0] if cell.source else "<empty cell>")
                continue
            cell.outputs = [nbformat.from_dict(output) for output in by_source[cell.source]]
            cell.execution_count = 1  # nbval treats a cell with outputs but no count as never run
    if missing:
        raise RuntimeError(
            f"{chapter.name}: {len(missing)} checked cell(s) have no stored output (new or changed cells), "
            f"starting with {missing[0]!r}. Run `{RECORD_COMMAND}`, review the diff of {path.name} "
            "and commit it."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{chapter.stem}.ipynb"
    nbformat.write(notebook, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    record_parser = sub.add_parser("record", help="execute the chapters and store the checked cells' outputs")
    prepare_parser = sub.add_parser("prepare", help="write the notebooks nbval runs")
    prepare_parser.add_argument("--out", type=Path, required=True)
    for command in (record_parser, prepare_parser):
        command.add_argument("chapters", nargs="*", type=Path, help="chapters (default: all)")
    args = parser.parse_args(argv)
    selected = args.chapters or chapters()
    if args.command == "record":
        if os.environ.get("BOOK_PROFILE") != "smoke":
            print("record in the smoke profile, as the tests run: BOOK_PROFILE=smoke", file=sys.stderr)
            return 2
        for chapter in selected:
            print(f"recorded {record(chapter).relative_to(REPO_ROOT)}")
        return 0
    try:
        for chapter in selected:
            print(f"prepared {prepare(chapter, args.out)}")
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
