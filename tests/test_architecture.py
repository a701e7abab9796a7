"""The layering of DESIGN.md, checked on the source rather than trusted to review.

Data flows one way, sources -> store -> detect -> alerts -> notify/report, and only
``tracker/store/`` speaks SQL. Both rules are about imports, so the tests read every
module's imports with ``ast`` (also those inside functions and ``TYPE_CHECKING``
blocks, which a runtime check of ``sys.modules`` would miss).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tracker"

#: Modules that still run their own SQL while it moves into tracker/store/ (issue 7,
#: item 4). Remove an entry once its module is converted; nothing may be added here.
_NOT_YET_MOVED: frozenset[str] = frozenset()

_SQL_MODULES = ("sqlalchemy", "tracker.store.schema")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything ``path`` imports, relative imports resolved.

    ``from a import b`` yields both ``a`` and ``a.b``: ``b`` may be a submodule
    (``from tracker.store import schema``), and a name that is not one cannot match
    a module rule by accident.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.startswith(t + ".") for t in targets)


def _offences(files: list[Path], targets: tuple[str, ...]) -> list[str]:
    """``file:line imports module``, once per import statement (its shortest match)."""
    found: dict[tuple[str, int], str] = {}
    for path in files:
        where = path.relative_to(ROOT).as_posix()
        for line, name in imported_modules(path):
            if _matches(name, targets) and len(name) < len(found.get((where, line), name + ".")):
                found[where, line] = name
    return [f"{where}:{line} imports {name}" for (where, line), name in sorted(found.items())]


def test_import_reader_sees_every_form() -> None:
    """The checks below are only as good as this reader, so pin it on real files."""
    notify = PACKAGE / "notify" / "__init__.py"
    names = {name for _, name in imported_modules(notify)}
    assert "tracker.store.notifications" in names  # a function-level import
    assert "tracker.workspace.Workspace" in names  # inside TYPE_CHECKING
    assert _matches("tracker.store.schema", _SQL_MODULES)
    assert _matches("sqlalchemy.exc", _SQL_MODULES)
    assert not _matches("sqlalchemy_utils", _SQL_MODULES)
    assert not _matches("tracker.store.schemas", _SQL_MODULES)


def test_the_allow_list_names_real_modules() -> None:
    missing = [p for p in _NOT_YET_MOVED if not (ROOT / p).is_file()]
    assert not missing, f"_NOT_YET_MOVED names files that do not exist: {missing}"


def test_only_the_store_speaks_sql() -> None:
    files = [p for p in sorted(PACKAGE.rglob("*.py"))
             if not p.is_relative_to(PACKAGE / "store")
             and p.relative_to(ROOT).as_posix() not in _NOT_YET_MOVED]
    assert files, "no modules found: is ROOT right?"
    offences = _offences(files, _SQL_MODULES)
    assert not offences, ("only tracker/store/ may import sqlalchemy or tracker.store.schema; "
                          "add a named function to a store module instead:\n"
                          + "\n".join(offences))


@pytest.mark.parametrize("layer", ["notify", "report"])
def test_notify_and_report_do_not_import_the_job(layer: str) -> None:
    """The job imports its steps; a step importing the job back would close a circle
    (shared types such as StepOutcome live in tracker.records for that reason)."""
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    offences = _offences(files, ("tracker.job",))
    assert not offences, "\n".join(offences)
