"""Sphinx glue for the website (loaded through ``_config.yml``).

* An ``.ipynb`` download for every chapter: myst-nb executes the MyST-Markdown chapters into
  ``jupyter_execute/`` (beside the html folder), and the book theme offers a notebook download only when
  ``ipynb_source`` is set, which nothing sets for text notebooks. This extension sets it and copies the
  executed notebook next to the ``.md`` source under ``_sources/``, with its outputs taken from the execution
  cache (:func:`with_cached_outputs`), not from myst-nb's copy, which can lack them or repeat them.
* A clear error when the locally served MathJax is missing, instead of a site whose math never renders.
* Each inline script once: sphinx-thebe and sphinx-togglebutton register theirs twice under Jupyter Book
  1.0 (with Sphinx 7.4), and the second ``const THEBE_JS_URL`` is a SyntaxError in every page's console.
* A default light/dark mode for the theme, whose absence is logged as an error on a first visit.
* One line under the title of every page saying which edition it belongs to: the profile, and the device,
  torch version and date its outputs came from (``book_edition``, which :mod:`tools.site` sets: this machine
  for a build executed here, the manifest for an imported edition).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from myst_nb.sphinx_ import NbMetadataCollector
from sphinx.application import Sphinx
from sphinx.errors import ConfigError, ExtensionError

MATHJAX = Path("_vendor") / "mathjax" / "tex-chtml.js"  # served as _static/mathjax/tex-chtml.js


def _check_mathjax(app: Sphinx) -> None:
    if not (Path(app.srcdir) / MATHJAX).exists():
        raise ConfigError(
            f"{MATHJAX} is missing: run `make setup` (it unpacks MathJax 3 from the npm registry)"
        )


def _executed_dir(app: Sphinx) -> Path:
    """Where myst-nb writes executed notebooks: ``jupyter_execute/`` beside the output folder."""
    return Path(app.outdir).parent / "jupyter_execute"


def _is_notebook(app: Sphinx, docname: str) -> bool:
    """Whether the page was executed as a notebook (myst-nb wrote it to ``jupyter_execute/``)."""
    return (_executed_dir(app) / f"{docname}.ipynb").exists()


def _add_ipynb_source(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if _is_notebook(app, pagename):
        context["ipynb_source"] = pagename + ".ipynb"


def _unique_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # The second registration of an inline script has filename "" instead of None: the same script.
        filename = getattr(script, "filename", None) or ""
        key = (filename, tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"][:] = unique


def _default_theme_mode(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    # The theme's template reads `default_mode` from the page context; Jupyter Book leaves it empty, and the
    # theme then logs "Got invalid theme mode" to the console on a reader's first visit.
    context["default_mode"] = context.get("default_mode") or "light"


def _output_date(app: Sphinx, pagename: str) -> str:
    """When the page's outputs were computed (its execution record); for a page without outputs, the newest
    record of the book, else today."""
    records = {name: NbMetadataCollector.get_exec_data(app.env, name) for name in app.env.found_docs}
    times = {name: record["mtime"] for name, record in records.items() if record and record.get("mtime")}
    timestamp = times.get(pagename) or max(times.values(), default=None)
    moment = datetime.fromtimestamp(timestamp, UTC) if timestamp else datetime.now(UTC)
    return moment.date().isoformat()


def edition_line(edition: dict, date: str) -> str:
    """The sentence every page starts with, e.g. "gpu edition: outputs computed on NVIDIA H200 with torch
    2.11.0, 2026-11-27"."""
    return (f"{edition['profile']} edition: outputs computed on {edition['device']} with torch "
            f"{edition['torch']}, {date}")


def _add_edition_line(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    edition = app.config.book_edition
    if not edition or doctree is None or "body" not in context:  # genindex, search: no page of the book
        return
    line = html.escape(edition_line(edition, edition.get("date") or _output_date(app, pagename)))
    paragraph = f'\n<p class="book-edition" style="font-size: 0.85em; opacity: 0.8">{line}</p>\n'
    body = context["body"]
    title_end = body.find("</h1>")  # under the page's title, or at the top of a page without one
    at = title_end + len("</h1>") if title_end >= 0 else 0
    context["body"] = body[:at] + paragraph + body[at:]


def with_cached_outputs(notebook: nbformat.NotebookNode, cache_path: str) -> nbformat.NotebookNode:
    """``notebook`` with the outputs that the execution cache at ``cache_path`` recorded for its code.

    myst-nb's own copy in ``jupyter_execute/`` is not fit to offer for download: when a page is read again
    and its outputs come from the cache, it writes the notebook *without* them, and when it executes a page,
    its stream merging (``nb_merge_streams``) appends later stream outputs to the first one in place and keeps
    them too, so their lines appear twice. The cache holds the outputs as the kernel produced them.

    Raises:
        sphinx.errors.ExtensionError: when the cache has no record for this notebook's code.
    """
    try:
        return get_cache(cache_path).merge_match_into_notebook(notebook)[1]
    except KeyError:
        raise ExtensionError(
            f"the execution cache {cache_path} has no outputs for a notebook whose code starts "
            f"{_first_code(notebook)!r}; delete _build and build again"
        ) from None


def _first_code(notebook: nbformat.NotebookNode) -> str:
    return next((cell.source[:60] for cell in notebook.cells if cell.cell_type == "code"), "")


def _copy_executed_notebooks(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    executed = _executed_dir(app)
    for notebook in executed.rglob("*.ipynb"):
        target = Path(app.outdir) / "_sources" / notebook.relative_to(executed)
        target.parent.mkdir(parents=True, exist_ok=True)
        content = nbformat.read(notebook, as_version=4)
        partial = target.with_suffix(".ipynb.partial")
        nbformat.write(with_cached_outputs(content, app.config.nb_execution_cache_path), partial)
        partial.replace(target)


def setup(app: Sphinx) -> dict:
    app.add_config_value("book_edition", {}, "html", types=[dict])
    app.connect("builder-inited", _check_mathjax)
    app.connect("html-page-context", _add_edition_line)
    app.connect("html-page-context", _add_ipynb_source)
    # Early: html-page-context stops at the first handler that returns a template name.
    app.connect("html-page-context", _unique_scripts, priority=100)
    app.connect("html-page-context", _default_theme_mode, priority=100)
    app.connect("build-finished", _copy_executed_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
