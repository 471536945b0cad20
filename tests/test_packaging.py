"""The dependencies in pyproject.toml cover every library the packages import.

A fresh ``pip install -e .`` gets only what pyproject.toml declares, so a library that
happens to be in the developers' environment but is missing there breaks new users.
"""

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nca_sim", "nca_train", "analysis", "cli")
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"PIL": "pillow"}


def declared_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        names.add(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower())
    return names


def imported_top_level_modules() -> set[str]:
    modules = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return modules


def test_every_imported_library_is_declared():
    third_party = {
        module
        for module in imported_top_level_modules()
        if module not in sys.stdlib_module_names and module not in PACKAGES
    }
    assert "numpy" in third_party  # the scan found the imports
    missing = sorted(
        module for module in third_party if DISTRIBUTIONS.get(module, module).lower() not in declared_dependencies()
    )
    assert missing == [], f"add {missing} to [project] dependencies in pyproject.toml"


def test_scipy_is_declared_for_numba_blas():
    # The simulator's kernels call np.dot inside Numba functions, which Numba links to
    # SciPy's BLAS; without SciPy the first simulated step raises ImportError.
    assert "scipy" in declared_dependencies()
