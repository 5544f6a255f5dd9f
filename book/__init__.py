"""The code of the book *Flow-based generative models, executable*: what a reader's notebook imports.

Two kinds of modules live here:

* modules exported from the chapters by ``make export``; each starts with a header naming its chapter.
  Edit the chapter, never the generated file;
* the hand-written runtime pieces a reader imports alongside them: :mod:`book.data` (MNIST /
  Fashion-MNIST), :mod:`book.profiles` (compute budgets, seeding, device), :mod:`book.cache` (trained
  models) and :mod:`book.progress` (progress bars).

The build's own code (export tool, site builder, Sphinx extension) lives apart, in ``tools/``.
"""
