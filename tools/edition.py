"""Executed editions: a folder of executed chapters that renders anywhere without executing a cell.

A run of the notebook runner (:mod:`tools.execute`, ``make execute OUT=<folder>``) writes a folder::

    manifest.json            profile, device, torch version, date; per chapter its source's SHA-256, seconds
    chapters/NN_topic.ipynb  the executed notebooks, one per chapter of _toc.yml
    results/<profile>.json   the headline numbers the chapters recorded (book/results.py)

``make import FROM=<folder>`` (``python -m tools.edition import``) copies it into ``editions/<profile>/``
after checking that every notebook was executed from the chapter now in the tree (same SHA-256 of the
``.md``) and that the notebooks fit the size budget; ``editions/gpu/`` is committed, so any clone renders the
gpu edition.
The site builder (:mod:`tools.site`) renders an edition by priming its execution cache with the notebooks
(:func:`prime_cache`) and refuses one whose chapters changed since (:func:`check_fresh`), naming them.
:func:`publish_plan` decides what ``make publish`` publishes.

This module imports only the standard library and PyYAML at load time: the runner imports it on machines that
have no Jupyter until its runtime is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
EDITIONS = "editions"
MANIFEST = "manifest.json"
FORMAT = 1
# Notebooks of one edition, figures included (PNG at screen resolution), as committed to the repository.
SIZE_BUDGET_BYTES = 15 * 10**6
KEPT_ON_IMPORT = ("README.md",)  # hand-written files of editions/<profile>/ that an import leaves in place
HOW_TO_EXECUTE = ("execute the chapters on a GPU machine with `make execute OUT=<folder>` and bring the "
                  "folder here with `make import FROM=<folder>` (README, \"The gpu edition\")")


class EditionError(ValueError):
    """An edition that cannot be imported or rendered: missing, stale, malformed or too large."""


@dataclass(frozen=True)
class ChapterRecord:
    """One executed chapter of a manifest."""

    name: str  # the page's name in _toc.yml, e.g. "chapters/01_normalizing_flows"
    source: str  # the chapter it was executed from, relative to the book's folder
    source_sha256: str  # of the chapter's bytes at execution
    notebook: str  # the executed notebook, relative to the edition's folder
    seconds: float  # wall-clock time of its execution


@dataclass(frozen=True)
class Manifest:
    """What a run of the runner executed, where and when (``manifest.json``)."""

    profile: str
    device: str  # "NVIDIA H200", or the CPU's model name
    torch: str  # torch.__version__ of the kernels
    python: str
    date: str  # ISO 8601, UTC, when the run finished
    chapters: tuple[ChapterRecord, ...]
    book_sha256: dict[str, str] = field(default_factory=dict)  # "book/x.py" -> SHA-256, at execution
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest of the edition in ``folder``.

        Raises:
            EditionError: when it is missing or not a manifest of this format.
        """
        path = folder / MANIFEST
        if not path.is_file():
            raise EditionError(f"{folder} holds no {MANIFEST}: it is not the output of `make execute`")
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise EditionError(f"{path}: format {data.get('format')!r}, this build reads format "
                                   f"{FORMAT}; execute the chapters again with this version of the book")
            chapters = tuple(ChapterRecord(**chapter) for chapter in data.pop("chapters"))
            return cls(chapters=chapters, **data)
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as error:
            raise EditionError(f"{path} is not a valid manifest ({error})") from None

    @property
    def day(self) -> str:
        """The date of the outputs, ``YYYY-MM-DD``."""
        return self.date[:10]

    def banner(self) -> dict[str, str]:
        """What the pages say about their outputs (:mod:`tools.sphinx_ext`)."""
        return {"profile": self.profile, "device": self.device, "torch": self.torch, "date": self.day}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def book_hashes(root: Path = REPO_ROOT) -> dict[str, str]:
    """SHA-256 of every module of ``book/`` (what the chapters import), keyed by path."""
    return {f"book/{path.name}": sha256_file(path) for path in sorted((root / "book").glob("*.py"))}


def toc_pages(root: Path) -> list[str]:
    """Every page of ``_toc.yml`` (``root`` and ``file`` entries) in reading order, without suffix."""

    def walk(node) -> list[str]:
        if isinstance(node, list):
            return [name for item in node for name in walk(item)]
        if not isinstance(node, dict):
            return []
        names = [str(node[key]) for key in ("root", "file") if key in node]
        for key in ("parts", "chapters", "sections"):
            names += walk(node.get(key, []))
        return names

    return [str(Path(page).with_suffix("")) if page.endswith((".md", ".ipynb")) else page
            for page in walk(yaml.safe_load((root / "_toc.yml").read_text()))]


def chapter_sources(root: Path) -> dict[str, Path]:
    """The pages of ``_toc.yml`` that are notebooks (a MyST-Markdown file with a kernel), by page name.

    Read with Jupytext's reader, as everything that parses chapters (DESIGN.md); imported here because the
    runner imports this module before its runtime is installed.
    """
    import jupytext

    chapters = {}
    for page in toc_pages(root):
        path = root / f"{page}.md"
        if path.is_file() and "kernelspec" in jupytext.read(path, fmt="md:myst").metadata:
            chapters[page] = path
    return chapters


def machine() -> dict[str, str | bool]:
    """The device the chapters run on (as :func:`book.profiles.choose_device` picks it), torch's version and
    Python's: the GPU's name, or the CPU's model name from ``/proc/cpuinfo``."""
    import torch

    from book.profiles import choose_device

    device = choose_device()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.is_file():
            models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")]
            name = models[0] if models else name
        name = f"{name} ({os.cpu_count()} cores)"
    return {"device": name, "cuda": device.type == "cuda", "torch": torch.__version__,
            "python": platform.python_version()}


def edition_dir(root: Path, profile: str) -> Path:
    return root / EDITIONS / profile


def problems(manifest: Manifest, root: Path) -> list[str]:
    """Why the edition does not match the chapters in ``root``: one line per stale or missing chapter."""
    executed = {chapter.name: chapter for chapter in manifest.chapters}
    lines = []
    for name, path in chapter_sources(root).items():
        source = path.relative_to(root).as_posix()
        if name not in executed:
            lines.append(f"{source} was not executed in this edition")
        elif sha256_file(path) != executed[name].source_sha256:
            lines.append(f"{source} changed since it was executed")
    return lines


def changed_modules(manifest: Manifest, package_root: Path = REPO_ROOT) -> list[str]:
    """The modules of ``book/`` that differ from those the edition was executed with (added, changed or
    removed): its outputs may differ from what the chapters would print now."""
    now = book_hashes(package_root)
    return sorted(name for name in now.keys() | manifest.book_sha256.keys()
                  if now.get(name) != manifest.book_sha256.get(name))


def stale_message(folder: Path, manifest: Manifest, lines: list[str]) -> str:
    return (f"the {manifest.profile} edition in {folder} is stale (executed {manifest.day} on "
            f"{manifest.device}); its notebooks no longer match these chapters:\n  " + "\n  ".join(lines)
            + f"\nTo refresh it, {HOW_TO_EXECUTE}.")


def verify(folder: Path, manifest: Manifest, root: Path) -> None:
    """Check that every chapter of ``root`` has its notebook in the edition, executed from this version.

    Raises:
        EditionError: naming each chapter that changed since its execution or was never executed, and saying
            how to refresh them; or naming notebooks that the manifest lists and the folder lacks.
    """
    lines = problems(manifest, root)
    if lines:
        raise EditionError(stale_message(folder, manifest, lines))
    missing = [chapter.notebook for chapter in manifest.chapters if not (folder / chapter.notebook).is_file()]
    if missing:
        raise EditionError(f"{folder / MANIFEST} lists notebooks that are missing: {', '.join(missing)}")


def check_fresh(folder: Path, root: Path) -> Manifest:
    """The manifest of the edition in ``folder`` (``editions/<profile>``), when it matches the chapters.

    Raises:
        EditionError: when there is no edition there (saying how one is made), or as :func:`verify`.
    """
    if not (folder / MANIFEST).is_file():
        raise EditionError(f"no {folder.name} edition in {folder} (no {MANIFEST}). The {folder.name} edition "
                           f"is not executed by the site build: {HOW_TO_EXECUTE}. `make book` builds the "
                           "cpu edition here.")
    manifest = Manifest.read(folder)
    verify(folder, manifest, root)
    return manifest


def notebook_sizes(folder: Path, manifest: Manifest) -> dict[str, int]:
    return {chapter.notebook: (folder / chapter.notebook).stat().st_size for chapter in manifest.chapters
            if (folder / chapter.notebook).is_file()}


def check_size(folder: Path, manifest: Manifest, budget: int = SIZE_BUDGET_BYTES) -> int:
    """The notebooks' total size in bytes.

    Raises:
        EditionError: above ``budget``, with the size of each notebook.
    """
    sizes = notebook_sizes(folder, manifest)
    total = sum(sizes.values())
    if total > budget:
        listing = "\n  ".join(f"{size / 1e6:6.2f} MB  {name}" for name, size in sizes.items())
        raise EditionError(f"the notebooks in {folder} take {total / 1e6:.1f} MB, over the budget of "
                           f"{budget / 1e6:.0f} MB for an edition in the repository:\n  {listing}\n"
                           "Make the largest figures smaller (fewer panels, a lower dpi), then execute "
                           "again.")
    return total


def import_edition(source: Path, root: Path = REPO_ROOT, budget: int = SIZE_BUDGET_BYTES) -> Path:
    """Copy a runner's output folder into ``root/editions/<profile>/``, replacing the edition there.

    Raises:
        EditionError: when ``source`` is not a runner's output, its notebooks were executed from other
            versions of the chapters (named) or are missing, or they exceed ``budget``; nothing is copied
            then.
    """
    source = source.resolve()
    manifest = Manifest.read(source)
    verify(source, manifest, root)
    total = check_size(source, manifest, budget)
    dest = edition_dir(root, manifest.profile)
    staging = dest.with_name(f".{dest.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for chapter in manifest.chapters:
        (staging / chapter.notebook).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / chapter.notebook, staging / chapter.notebook)
    shutil.copy2(source / MANIFEST, staging / MANIFEST)
    results = source / "results" / f"{manifest.profile}.json"
    if results.is_file():
        (staging / "results").mkdir()
        shutil.copy2(results, staging / "results" / results.name)
    for name in KEPT_ON_IMPORT:
        if (dest / name).is_file():
            shutil.copy2(dest / name, staging / name)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    print(f"imported the {manifest.profile} edition ({len(manifest.chapters)} chapters, "
          f"{total / 1e6:.1f} MB, executed {manifest.day} on {manifest.device}, torch {manifest.torch}) "
          f"into {dest}")
    changed = changed_modules(manifest)
    if changed:
        print(f"note: {', '.join(changed)} changed since the execution; the outputs may differ from what the "
              "chapters would print now")
    if not results.is_file():
        print(f"note: {source} holds no results/{manifest.profile}.json (the chapters recorded no numbers)")
    return dest


def edition_digest(folder: Path, manifest: Manifest) -> str:
    """A hash of the edition's manifest and notebooks: the key of its rendering under ``_build/cache``."""
    digest = hashlib.sha256((folder / MANIFEST).read_bytes())
    for chapter in manifest.chapters:
        digest.update((folder / chapter.notebook).read_bytes())
    return digest.hexdigest()[:12]


def prime_cache(folder: Path, manifest: Manifest, cache_path: Path, root: Path) -> None:
    """Put the edition's executed notebooks into the execution cache at ``cache_path``, so that myst-nb finds
    every chapter's outputs there and executes nothing.

    jupyter-cache matches a notebook by its code cells and kernel; each match is checked here with myst-nb's
    own reading of the chapter, the one the site build makes.

    Raises:
        EditionError: when a chapter's code, as the site reads it, has no match among the notebooks.
    """
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from myst_nb.core.read import read_myst_markdown_notebook

    cache = get_cache(str(cache_path))
    for chapter in manifest.chapters:
        path = root / chapter.source
        as_read = read_myst_markdown_notebook(path.read_text(encoding="utf-8"), path=path)
        try:
            cache.match_cache_notebook(as_read)
            continue
        except KeyError:
            pass
        executed = nbformat.read(folder / chapter.notebook, as_version=4)
        bundle = CacheBundleIn(nb=executed, uri=str(path), data={"execution_seconds": chapter.seconds})
        cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
        try:
            cache.match_cache_notebook(as_read)
        except KeyError:
            raise EditionError(f"{chapter.notebook} in {folder} does not hold the code of {chapter.source} "
                               "as the site reads it, though the source's hash matches; execute it "
                               "again") from None


def publish_plan(requested: str | None, gpu_problem: str | None) -> str:
    """The edition ``make publish`` publishes: the gpu edition, unless the cpu edition is asked for.

    Args:
        requested: ``None`` or ``"gpu"`` (the default), or ``"cpu"`` (``make publish EDITION=cpu``).
        gpu_problem: why the gpu edition cannot be rendered (missing or stale, from :func:`check_fresh`),
            ``None`` when it can.

    Raises:
        EditionError: for an unknown edition, or when the gpu edition is asked for and cannot be rendered
            (with the reason, and how to publish the cpu edition instead).
    """
    if requested not in (None, "gpu", "cpu"):
        raise EditionError(f"unknown edition {requested!r}; choose gpu (the default) or cpu")
    if requested == "cpu":
        return "cpu"
    if gpu_problem is not None:
        raise EditionError(f"{gpu_problem}\nNothing was published. To publish the cpu edition instead: "
                           "`make publish EDITION=cpu`.")
    return "gpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.edition", description="Executed editions.")
    sub = parser.add_subparsers(dest="command", required=True)
    importer = sub.add_parser("import", help="copy a `make execute` folder into editions/<profile>/")
    importer.add_argument("folder", type=Path)
    status = sub.add_parser("status", help="say whether an edition matches the chapters")
    status.add_argument("--profile", default="gpu")
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            import_edition(args.folder)
        else:
            folder = edition_dir(REPO_ROOT, args.profile)
            manifest = check_fresh(folder, REPO_ROOT)
            print(f"the {manifest.profile} edition in {folder} matches the chapters (executed "
                  f"{manifest.day} on {manifest.device}, torch {manifest.torch})")
        return 0
    except EditionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
