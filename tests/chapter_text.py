"""The front matter of a MyST-Markdown chapter, shared by the tests that write throw-away chapters."""

import textwrap

MYST_HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def myst_chapter(body: str) -> str:
    """A chapter file's text: the front matter followed by ``body`` (dedented)."""
    return MYST_HEADER + textwrap.dedent(body)
