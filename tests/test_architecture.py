"""The architecture holds: the import-linter contracts of pyproject.toml, and no domain reaching into
another's private names.

The contracts (``[tool.importlinter]``) keep entry points above the domains and the domains above the
foundation, keep the domains free of import cycles and keep HTTP out of services; the imports they still
tolerate are listed there one by one, each with its reason. ``lint-imports`` prints the broken contract
and the chain of imports that breaks it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "consentry"


def test_the_import_contracts_hold(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert code == 0, report


@dataclass(frozen=True)
class Reach:
    """A use, in ``module`` at ``line``, of the private name ``name`` of the module ``owner``."""

    module: str
    line: int
    owner: str
    name: str


def module_name(path: Path) -> str:
    """The dotted name of a source file under ``src/``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def domain_of(module: str) -> str:
    """The domain a module belongs to: its package under ``consentry`` (or the top-level module)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def private(name: str) -> bool:
    """A name its module keeps to itself: one leading underscore, not a dunder."""
    return name.startswith("_") and not name.startswith("__")


def resolve(module: str, node: ast.ImportFrom, *, package: bool) -> str:
    """The absolute module a ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def is_module(name: str) -> bool:
    """Whether a dotted ``consentry`` name is a module or package of the source tree."""
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


def reaches(source: str, *, module: str, package: bool = False) -> Iterator[Reach]:
    """Every use of another domain's private name in the source of ``module``: a private name imported
    from it, a private module of it imported, or a private attribute of one of its modules read."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> the consentry module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            owner = resolve(module, node, package=package)
            if not owner.startswith("consentry"):
                continue
            for alias in node.names:
                if is_module(f"{owner}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{owner}.{alias.name}"
                yield from _own(module, owner, alias.name, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("consentry."):
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    owner, _, name = alias.name.rpartition(".")
                    yield from _own(module, owner, name, node.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            yield from _own(module, aliases[node.value.id], node.attr, node.lineno)


def _own(module: str, owner: str, name: str, line: int) -> Iterator[Reach]:
    """A reach when ``name`` (or a part of ``owner``) is private and ``owner`` is another domain's."""
    if domain_of(owner) == domain_of(module) or owner == "consentry":
        return
    if private(name) or any(private(part) for part in owner.split(".")):
        yield Reach(module, line, owner, name)


def test_no_domain_uses_another_domains_private_names() -> None:
    found = [
        reach
        for path in sorted(PACKAGE.rglob("*.py"))
        for reach in reaches(path.read_text(), module=module_name(path), package=path.name == "__init__.py")
    ]
    assert not found, "\n".join(f"{r.module}:{r.line} uses {r.owner}.{r.name}" for r in found)


def test_the_private_name_check_finds_each_form_of_reach() -> None:
    """The check is itself checked: each form of reaching into another domain is found, none inside one."""
    source = (
        "from consentry.lake.check import _hidden\n"
        "from consentry.lake import check\n"
        "from consentry.retention.service import _own_domain\n"
        "import consentry.lake.check as lake_check\n"
        "from ..lake.check import _relative\n"
        "check._helper()\n"
        "lake_check._other\n"
        "check.public()\n"
    )
    found = sorted((r.line, r.owner, r.name) for r in reaches(source, module="consentry.retention.probe"))
    assert found == [
        (1, "consentry.lake.check", "_hidden"),
        (5, "consentry.lake.check", "_relative"),
        (6, "consentry.lake.check", "_helper"),
        (7, "consentry.lake.check", "_other"),
    ]
