"""The code of the book *Flow-based generative models, executable*.

Two kinds of modules live here:

* hand-written infrastructure: :mod:`book.profiles` (compute budgets, seeding, device),
  :mod:`book.data` (MNIST / Fashion-MNIST), :mod:`book.cache` (trained models), :mod:`book.progress`,
  :mod:`book.export` (the tool that writes the next kind) and :mod:`book.sphinx_ext` (the website);
* modules exported from the chapters by ``make export``; each starts with a header naming its chapter.
  Edit the chapter, never the generated file.
"""
