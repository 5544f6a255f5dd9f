"""The package declares what it imports: every third-party module that book/ imports is a dependency."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules(package: Path) -> set[str]:
    """The top-level names of every absolute import in ``package/*.py``, at any depth of the code."""
    names = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_third_party_module_book_imports_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalized(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}
    third_party = imported_top_level_modules(ROOT / "book") - set(sys.stdlib_module_names) - {"book"}
    distributions = packages_distributions()
    undeclared = {
        module: distributions.get(module, ["(not installed)"])
        for module in sorted(third_party)
        if not declared & {normalized(dist) for dist in distributions.get(module, [])}
    }
    assert not undeclared, f"book/ imports these without declaring them in pyproject.toml: {undeclared}"

