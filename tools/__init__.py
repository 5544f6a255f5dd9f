"""The build's own code, run from the repository root and never imported by the chapters.

* :mod:`tools.export`: writes the generated modules of ``book/`` from the chapters' exported cells
  (``python -m tools.export [--check]``, ``make export``);
* :mod:`tools.site`: builds the website, one cached build per profile (``python -m tools.site build``,
  ``make book``), and fetches MathJax (``python -m tools.site mathjax``);
* :mod:`tools.sphinx_ext`: the Sphinx extension that ``_config.yml`` loads;
* :mod:`tools.execute`: the notebook runner, which executes the chapters where there is no Jupyter Book
  (``make execute OUT=<folder>``), with its own small runtime :mod:`tools.runtime` (``make runtime``);
* :mod:`tools.edition`: executed editions: their manifest, the check that they match the chapters, and
  importing one into ``editions/<profile>/`` (``make import FROM=<folder>``).
"""
