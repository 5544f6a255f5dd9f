"""Tests of tools/sphinx_ext.py: the downloadable notebooks take their outputs from the execution cache."""

import copy

import nbformat
import pytest
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from sphinx.errors import ExtensionError

from tools.sphinx_ext import with_cached_outputs


def stream(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def page() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A page"),
        nbformat.v4.new_code_cell("print('first'); print('second')"),
        nbformat.v4.new_markdown_cell("Prose between the cells."),
        nbformat.v4.new_code_cell("print('third')"),
    ])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


@pytest.fixture
def cache_path(tmp_path) -> str:
    executed = page()
    executed.cells[1].outputs = [stream("first\n"), stream("second\n")]  # as the kernel sent them
    executed.cells[3].outputs = [stream("third\n")]
    get_cache(str(tmp_path)).cache_notebook_bundle(CacheBundleIn(nb=executed, uri="page.ipynb"),
                                                   check_validity=False)
    return str(tmp_path)


def test_outputs_come_from_the_cache_whatever_the_copy_holds(cache_path):
    reread = page()  # what myst-nb writes when the outputs came from the cache: none
    merged = page()  # what it writes after executing: the later stream appended to the first, and kept
    merged.cells[1].outputs = [stream("first\nsecond\n"), stream("second\n")]
    for notebook in (reread, merged):
        before = copy.deepcopy(notebook)
        result = with_cached_outputs(notebook, cache_path)
        assert [cell.get("outputs") for cell in result.cells] == [
            None, [stream("first\n"), stream("second\n")], None, [stream("third\n")]]
        assert [cell.source for cell in result.cells] == [cell.source for cell in page().cells]
        assert notebook == before  # the input is not modified


def test_a_notebook_the_cache_never_ran_is_an_error(cache_path):
    changed = page()
    changed.cells[3].source = "print('something else')"
    with pytest.raises(ExtensionError, match="no outputs for a notebook whose code starts"):
        with_cached_outputs(changed, cache_path)
