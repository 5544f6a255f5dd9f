"""Building the website: one build per profile, never mixing their outputs.

Jupyter Book's execution cache (jupyter-cache) keys a notebook by its code only, and Sphinx re-reads a page
only when its source changed. Neither knows about ``BOOK_PROFILE`` or about a change in ``book/``. So the
cache lives under a *build key*: the profile plus a hash of every module of ``book/`` and the pinned
requirements. A smoke build can then never serve its outputs to a cpu or gpu build (nor the reverse), and a
change to the package re-executes the chapters that import it; rebuilding with nothing changed re-executes
nothing. Sphinx's environment and the pages live below it under a *site key*, a hash of this package
(``tools/``), which no chapter imports: a change to the build's own code renders every page afresh and
re-executes nothing.

The gpu profile is never executed here: its pages are rendered from the executed edition committed in
``editions/gpu/`` (:mod:`tools.edition`), under a key of its own, ``gpu-edition-<hash of the edition>``.

``python -m tools.site build`` (``make book``), ``python -m tools.site publish`` (``make publish``) and
``python -m tools.site mathjax`` (part of ``make setup``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from unittest import mock

from book.profiles import PROFILE_ENV, get_profile

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = REPO_ROOT / "_build"
KEY_FILE = ".book-build-key"

MATHJAX_PACKAGE = "mathjax@3.2.2"
# The registry's integrity digest of that tarball; npm checks it on download, and so do we after.
MATHJAX_INTEGRITY = (
    "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
)
# Not under _static/: Jupyter Book would add every .js file there to every page as a <script>.
MATHJAX_DIR = REPO_ROOT / "_vendor" / "mathjax"


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build_key(profile: str, root: Path = REPO_ROOT) -> str:
    """``<profile>-<hash>``, the key of the execution cache: the hash covers every module of ``book/`` (what
    the chapters import) and ``requirements.txt``."""
    return f"{profile}-{_digest(sorted((root / 'book').glob('*.py')) + [root / 'requirements.txt'])}"


def site_key(root: Path = REPO_ROOT) -> str:
    """``site-<hash>`` of the modules of ``tools/``: Sphinx's state and the html live under it, so that a
    change to the build's own code renders every page afresh from the (unchanged) execution cache."""
    return f"site-{_digest(sorted((root / 'tools').glob('*.py')))}"


def build_dir(key: str, build_root: Path = BUILD_ROOT) -> Path:
    """Everything one build key owns: the execution cache, and per :func:`site_key` Sphinx's doctrees, the
    executed notebooks and the html."""
    return build_root / "cache" / key


def local_edition(profile: str) -> dict[str, str | None]:
    """What the pages of a build executed here say about their outputs: this machine's device and torch; the
    date of each page's outputs comes from its execution record (:mod:`tools.sphinx_ext`)."""
    from tools.edition import machine

    described = machine()
    return {"profile": profile, "device": str(described["device"]), "torch": str(described["torch"]),
            "date": None}


@contextmanager
def executing_nothing(edition: Path) -> Iterator[None]:
    """While an edition renders, a chapter that would execute (its code matched nothing in the primed cache)
    stops the build instead: the gpu profile must never run on the machine that renders it."""
    from myst_nb.core.execute import cache

    def refuse(notebook, cwd: str, **kwargs) -> None:
        raise RuntimeError(f"a chapter in {cwd} was about to be executed although its outputs come from "
                           f"{edition}; its code differs from the executed notebook's")

    with mock.patch.object(cache, "single_nb_execution", refuse):
        yield


def build(profile_name: str | None, outdir: Path, *, source: Path = REPO_ROOT,
          from_edition: bool | None = None) -> int:
    """Execute every chapter in the profile (cached) and publish the website to ``outdir``; 0 on success.

    Sphinx writes into the build key's own folder; ``outdir`` then receives a copy, so switching profiles
    back and forth never mixes pages, figures or executed notebooks of different builds. ``source`` is the
    book's folder (``_config.yml``, ``_toc.yml``, chapters); the tests build small books elsewhere.

    ``from_edition`` (the default for the gpu profile) renders the executed edition in
    ``source/editions/<profile>`` instead of executing: its notebooks go into the execution cache, where
    myst-nb finds every chapter's outputs. That keeps the pages exactly those of an executed build (the same
    ``.md`` read by the same parser, the same download and launch buttons), where rendering the ``.ipynb``
    files as sources would change every page's source, its download and its launch links. A chapter that
    changed since its execution is refused before Sphinx starts (:func:`tools.edition.check_fresh`), and
    :func:`executing_nothing` stops any execution that would slip through.

    Raises:
        tools.edition.EditionError: when the edition is missing or stale (a ValueError, naming the chapters).
    """
    from jupyter_book.sphinx import build_sphinx

    from tools.edition import changed_modules, check_fresh, edition_digest, edition_dir, prime_cache

    profile = get_profile(profile_name)
    if from_edition is None:
        from_edition = profile.name == "gpu"
    if from_edition:
        edition = edition_dir(source, profile.name)
        manifest = check_fresh(edition, source)
        key = f"{profile.name}-edition-{edition_digest(edition, manifest)}"
        base = build_dir(key, source / "_build")
        prime_cache(edition, manifest, base / "jupyter_cache", source)
        banner, guard = manifest.banner(), executing_nothing(edition)
        print(f"rendering the {profile.name} edition of {edition} (executed {manifest.day} on "
              f"{manifest.device}, torch {manifest.torch}) into {outdir}; nothing is executed")
        changed = changed_modules(manifest)
        if changed:
            print(f"note: {', '.join(changed)} changed since the edition was executed; its outputs may "
                  "differ from what the chapters would print now")
    else:
        key = build_key(profile.name)
        base = build_dir(key, source / "_build")
        banner, guard = local_edition(profile.name), nullcontext()
        print(f"building the book in profile {profile.name!r} (build {key}) into {outdir}")
    rendered = base / site_key()
    os.environ[PROFILE_ENV] = profile.name
    os.environ["BOOK_BUILD"] = "1"
    with guard:
        result = build_sphinx(
            str(source),
            str(rendered / "html"),
            noconfig=True,
            path_config=str(source / "_config.yml"),
            confoverrides={
                "nb_execution_cache_path": str(base / "jupyter_cache"),
                "latex_individualpages": False,  # jupyter-book's own CLI always passes this
                "book_edition": banner,
            },
            doctreedir=str(rendered / "doctrees"),
            warningiserror=True,
            keep_going=True,
        )
    if result != 0:
        return int(result) if isinstance(result, int) else 1
    outdir = outdir.resolve()
    staging = outdir.with_name(outdir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for stale in base.glob("site-*"):  # renderings by earlier versions of the site's code
        if stale != rendered:
            shutil.rmtree(stale, ignore_errors=True)
    shutil.copytree(rendered / "html", staging)
    (staging / KEY_FILE).write_text(key + "\n")
    shutil.rmtree(outdir, ignore_errors=True)
    staging.rename(outdir)
    print(f"website written to {outdir}")
    return 0


def publish(requested: str | None, outdir: Path = BUILD_ROOT / "html") -> int:
    """Build the edition :func:`tools.edition.publish_plan` chooses and push it to the gh-pages branch."""
    from tools.edition import EditionError, check_fresh, edition_dir, publish_plan

    try:
        check_fresh(edition_dir(REPO_ROOT, "gpu"), REPO_ROOT)
        gpu_problem = None
    except EditionError as error:
        gpu_problem = str(error)
    edition = publish_plan(requested, gpu_problem)
    print(f"publishing the {edition} edition")
    result = build(edition, outdir)
    if result != 0:
        return result
    ghp_import = Path(sys.executable).parent / "ghp-import"
    return subprocess.run([str(ghp_import), "--no-jekyll", "--push", "--force", str(outdir)]).returncode


def fetch_mathjax() -> Path:
    """Unpack MathJax 3 (``es5/``) from the npm registry into ``_vendor/mathjax``, atomically."""
    if (MATHJAX_DIR / "tex-chtml.js").exists():
        return MATHJAX_DIR
    if shutil.which("npm") is None:
        raise RuntimeError(
            "npm is needed once to fetch MathJax 3 (`apt-get install npm`, or install Node.js)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["npm", "pack", MATHJAX_PACKAGE, "--json", "--pack-destination", tmp],
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(out.stdout)[0]
        if info["integrity"] != MATHJAX_INTEGRITY:
            raise RuntimeError(f"{MATHJAX_PACKAGE}: integrity {info['integrity']} != {MATHJAX_INTEGRITY}")
        MATHJAX_DIR.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=MATHJAX_DIR.parent, prefix=".mathjax-"))
        with tarfile.open(Path(tmp) / info["filename"]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith("package/es5/")]
            archive.extractall(staging, members=members, filter="data")
        os.replace(staging / "package" / "es5", MATHJAX_DIR)
        shutil.rmtree(staging)
    return MATHJAX_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.site", description="Build the book's website.")
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="execute the chapters and write the website")
    build_parser.add_argument(
        "--profile", default=None, help="smoke, cpu or gpu (default: $BOOK_PROFILE or auto)"
    )
    build_parser.add_argument("--out", type=Path, default=BUILD_ROOT / "html", help="output folder")
    build_parser.add_argument("--from-edition", action="store_true",
                              help="render editions/<profile>/ without executing (always so for gpu)")
    publish_parser = sub.add_parser("publish", help="build the gpu edition (or the cpu one) and push it")
    publish_parser.add_argument("--edition", default=None, help="gpu (the default) or cpu")
    sub.add_parser("mathjax", help="fetch MathJax 3 into _vendor/mathjax")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            return build(args.profile, args.out, from_edition=args.from_edition or None)
        if args.command == "publish":
            return publish(args.edition or None)
        print(f"MathJax in {fetch_mathjax().relative_to(REPO_ROOT)}")
        return 0
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
