"""Tests of book/sphinx_ext.py's repair of the executed notebooks offered for download."""

import copy

from book.sphinx_ext import drop_merged_streams


def stream(name: str, text: str) -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def test_outputs_that_myst_nb_merged_into_the_first_are_dropped():
    # What myst-nb leaves behind: the first stdout output holds both lines, the second is still there.
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        stream("stdout", "first\nsecond\n"),
        stream("stderr", "a warning\n"),
        stream("stdout", "second\n"),
        {"output_type": "display_data", "data": {"text/plain": "figure"}},
        stream("stdout", "\n"),
    ]}]}
    drop_merged_streams(notebook)
    assert notebook["cells"][0]["outputs"] == [
        stream("stdout", "first\nsecond\n"),
        stream("stderr", "a warning\n"),
        {"output_type": "display_data", "data": {"text/plain": "figure"}},
    ]


def test_outputs_that_were_not_merged_are_kept():
    notebook = {"cells": [
        {"cell_type": "code", "outputs": [stream("stdout", "first\n"), stream("stdout", ["sec", "ond\n"]),
                                          stream("stderr", "second\n")]},
        {"cell_type": "markdown", "source": "text"},
    ]}
    before = copy.deepcopy(notebook)
    assert drop_merged_streams(notebook) == before
