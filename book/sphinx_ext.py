"""Sphinx glue for the website (loaded through ``_config.yml``).

* An ``.ipynb`` download for every chapter: myst-nb executes the MyST-Markdown chapters into
  ``jupyter_execute/`` (beside the html folder), and the book theme offers a notebook download only when
  ``ipynb_source`` is set, which nothing sets for text notebooks. This extension sets it and copies the
  executed notebook (outputs included) next to the ``.md`` source under ``_sources/``, without the stream
  outputs that myst-nb's stream merging leaves in it twice (:func:`drop_merged_streams`).
* A clear error when the locally served MathJax is missing, instead of a site whose math never renders.
* Each inline script once: sphinx-thebe and sphinx-togglebutton register theirs twice under Jupyter Book
  1.0 (with Sphinx 7.4), and the second ``const THEBE_JS_URL`` is a SyntaxError in every page's console.
* A default light/dark mode for the theme, whose absence is logged as an error on a first visit.
"""

from __future__ import annotations

import json
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ConfigError

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


def _text(output: dict) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def drop_merged_streams(notebook: dict) -> dict:
    """Remove, in place, the stream outputs that myst-nb has already merged into an earlier one.

    With ``nb_merge_streams``, myst-nb appends every later stream output of a cell (stdout to stdout, stderr
    to stderr) to the first one *in place*, on the same notebook it writes to ``jupyter_execute/``, but keeps
    the later outputs in that notebook too, so a download would show their lines twice. A later output is
    dropped when the first output of its stream already contains its text (or it has none); any other is kept.
    """
    for cell in notebook.get("cells", []):
        outputs, first, kept = cell.get("outputs") or [], {}, []
        for output in outputs:
            if output.get("output_type") == "stream":
                name, text = output.get("name"), _text(output).rstrip()
                if name not in first:
                    first[name] = _text(output)
                elif not text or text in first[name]:
                    continue
            kept.append(output)
        if outputs:
            cell["outputs"] = kept
    return notebook


def _copy_executed_notebooks(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    executed = _executed_dir(app)
    for notebook in executed.rglob("*.ipynb"):
        target = Path(app.outdir) / "_sources" / notebook.relative_to(executed)
        target.parent.mkdir(parents=True, exist_ok=True)
        content = json.loads(notebook.read_text(encoding="utf-8"))
        if app.config.nb_merge_streams:
            drop_merged_streams(content)
        partial = target.with_suffix(".ipynb.partial")
        partial.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        partial.replace(target)


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _check_mathjax)
    app.connect("html-page-context", _add_ipynb_source)
    # Early: html-page-context stops at the first handler that returns a template name.
    app.connect("html-page-context", _unique_scripts, priority=100)
    app.connect("html-page-context", _default_theme_mode, priority=100)
    app.connect("build-finished", _copy_executed_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
