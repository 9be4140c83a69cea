"""The public face of each package, read from the source with ``ast`` (nothing is imported).

Each package of ``upkeep`` says what it is and names, in ``__all__``, the modules other
packages are meant to import; every import across packages goes to one of them. A name that
starts with ``_`` is private to the module that defines it: no other module, in the source
or in the tests, imports it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src"
PACKAGE_ROOT = SOURCE / "upkeep"
WALKED = (SOURCE, ROOT / "tests", ROOT / "benchmarks")

PACKAGES = sorted(
    path.name
    for path in PACKAGE_ROOT.iterdir()
    if path.is_dir() and (path / "__init__.py").is_file()
)

ALLOWED_PRIVATE_IMPORTS: tuple[tuple[str, str, str], ...] = (
    # (importing file, module, the private names it imports from it): none today
)
"""The private imports there are today; the list only shrinks."""
ALLOWED = {
    (file, module, name)
    for file, module, names in ALLOWED_PRIVATE_IMPORTS
    for name in names.split()
}


@dataclass(frozen=True)
class Import:
    """One imported module (``name`` None) or one name imported from a module."""

    file: str
    line: int
    module: str
    name: str | None


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _imports(path: Path) -> tuple[Import, ...]:
    """Given a file, return its imports (parsed once per test process: two tests read them)."""
    shown = path.relative_to(ROOT).as_posix()
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=shown)):
        if isinstance(node, ast.Import):
            found += [Import(shown, node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [Import(shown, node.lineno, node.module, alias.name) for alias in node.names]
    return tuple(found)


def _python_files() -> Iterator[Path]:
    for top in WALKED:
        yield from sorted(top.rglob("*.py"))


def _package_of(module: str) -> str | None:
    """Given a dotted module name, return the upkeep package it is in, or None."""
    parts = module.split(".")
    if parts[0] != "upkeep" or len(parts) < 2 or parts[1] not in PACKAGES:
        return None
    return parts[1]


@functools.cache
def _declared(package: str) -> tuple[str | None, list[str] | None]:
    """Given a package, return its docstring and its ``__all__`` (None for either missing).
    Read once per package: every import across packages is checked against it."""
    tree = ast.parse((PACKAGE_ROOT / package / "__init__.py").read_text(encoding="utf-8"))
    names: list[str] | None = None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(target, "id", None) for target in node.targets] == ["__all__"]
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            names = [
                element.value
                for element in node.value.elts
                if isinstance(element, ast.Constant) and isinstance(element.value, str)
            ]
    return ast.get_docstring(tree), names


def _public(package: str) -> list[str]:
    names = _declared(package)[1]
    assert names is not None, f"upkeep.{package} has no __all__"
    return names


def test_the_walk_finds_the_packages_and_their_imports() -> None:
    assert {"core", "store", "engine", "cli"} <= set(PACKAGES)
    found = list(_imports(PACKAGE_ROOT / "cli" / "main.py"))
    assert any(found_import.module.startswith("upkeep.") for found_import in found)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_it_is_and_names_its_public_modules(package: str) -> None:
    docstring, names = _declared(package)
    assert docstring, f"upkeep.{package}/__init__.py has no docstring"
    assert names, f"upkeep.{package}/__init__.py has no __all__ naming its public modules"
    assert names == sorted(set(names)), f"upkeep.{package}.__all__ is not sorted and unique"
    directory = PACKAGE_ROOT / package
    missing = [
        name
        for name in names
        if not (directory / f"{name}.py").is_file()
        and not (directory / name / "__init__.py").is_file()
    ]
    assert not missing, f"upkeep.{package}.__all__ names no such module: {missing}"


def test_other_packages_import_only_the_public_modules() -> None:
    """Given every import in the source, each one that crosses into another package goes to
    a module that package names in ``__all__``."""
    unlisted: set[str] = set()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        importer = _package_of(_module_of(path))
        for found in _imports(path):
            package = _package_of(found.module)
            if package is None or package == importer:
                continue
            parts = found.module.split(".")
            # "from upkeep.store import spill" names the module in the imported name.
            module = parts[2] if len(parts) > 2 else found.name
            if module is not None and module not in _public(package):
                unlisted.add(f"{found.file}:{found.line} imports upkeep.{package}.{module}")
    assert not unlisted, (
        "imports of modules their package does not name in __all__ (add the module to "
        "__all__ if other packages are meant to use it):\n" + "\n".join(sorted(unlisted))
    )


def _private_imports() -> dict[tuple[str, str, str], int]:
    found_at: dict[tuple[str, str, str], int] = {}
    for path in _python_files():
        for found in _imports(path):
            if found.module != "upkeep" and not found.module.startswith("upkeep."):
                continue
            names = [found.name] if found.name else []
            # "import upkeep.x._y" reaches a private module just the same.
            names += found.module.split(".")[1:]
            for name in names:
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    found_at.setdefault((found.file, found.module, name), found.line)
    return found_at


def test_no_module_imports_a_private_name_of_another() -> None:
    found = _private_imports()
    offenders = [
        f"{file}:{line} imports {name} from {module}"
        for (file, module, name), line in sorted(found.items())
        if (file, module, name) not in ALLOWED
    ]
    assert not offenders, (
        "private names imported from another module (make the name public where it is "
        "shared, or test it through the public function that uses it):\n" + "\n".join(offenders)
    )
    stale = sorted(ALLOWED - set(found))
    assert not stale, f"drop these from ALLOWED_PRIVATE_IMPORTS, they are gone: {stale}"
