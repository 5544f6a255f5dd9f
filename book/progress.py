"""Progress bars that help a person at a notebook and stay out of the built website.

In Jupyter or a terminal, :func:`progress` is tqdm. While the book is built or tested (``BOOK_BUILD=1``, set
by the Makefile), a bar's redraws would be stored in the page as hundreds of lines; there it prints one
summary line instead, when the loop ends.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

BUILD_ENV = "BOOK_BUILD"
T = TypeVar("T")


def in_build() -> bool:
    """Whether this process runs inside a website build or a test (``$BOOK_BUILD`` set to 1)."""
    return os.environ.get(BUILD_ENV, "") == "1"


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None) -> Iterator[T]:
    """Iterate over ``iterable`` with a progress bar (tqdm), or one summary line inside a build."""
    if not in_build():
        from tqdm.auto import tqdm  # a widget in Jupyter (ipywidgets), text in a terminal

        yield from tqdm(iterable, desc=desc, total=total, file=sys.stderr)
        return
    start, count = time.perf_counter(), 0
    for count, item in enumerate(iterable, start=1):  # noqa: B007 (count is read after the loop)
        yield item
    print(f"{desc or 'done'}: {count} iterations in {time.perf_counter() - start:.1f} s")
