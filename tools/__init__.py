"""The build's own code, run from the repository root and never imported by the chapters.

* :mod:`tools.export`: writes the generated modules of ``book/`` from the chapters' exported cells
  (``python -m tools.export [--check]``, ``make export``);
* :mod:`tools.site`: builds the website, one cached build per profile (``python -m tools.site build``,
  ``make book``), and fetches MathJax (``python -m tools.site mathjax``);
* :mod:`tools.sphinx_ext`: the Sphinx extension that ``_config.yml`` loads.
"""
