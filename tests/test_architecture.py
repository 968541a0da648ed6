"""The package's dependency rules (shared/DESIGN.md section 2), checked by walking the imports.

    api, cli          ->  services (every use case)
    services          ->  brain, federated, personalization, privacy, training, scheduler, tutor
    domain packages   ->  registry, data
    registry, data    ->  shared modules (config, errors, clock, logging_setup, utils, error_translation)

A module may import its own package, any lower layer, and packages of its own layer as long as
the packages' graph stays acyclic. Nothing imports `api` or `cli`; the interfaces (`api`, `cli`,
`flower_app`) call the rest only through `services` (from lower packages they may name types and
constants, never import a function to call) and never open a registry transaction themselves.
Tables are defined in `aivo.registry.tables` only. An
import inside a function is allowed only when it is there for start-up time and says so in a
comment containing "start-up" (on its line, on the line above, or above the block of imports it
starts).

Every import is counted: module level, inside `if TYPE_CHECKING:` and inside functions.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "aivo"

SHARED = {"", "config", "errors", "clock", "logging_setup", "utils", "error_translation"}
LAYERS: dict[str, int] = {
    **{name: 0 for name in SHARED},
    "data": 1, "registry": 1,
    "brain": 2, "federated": 2, "personalization": 2, "privacy": 2, "training": 2, "scheduler": 2, "tutor": 2,
    "sites": 2,
    "services": 3,
    "api": 4, "cli": 4, "flower_app": 4,
    "__main__": 5,
}
INTERFACES = {"api", "cli", "flower_app"}
STARTUP_MARKER = "start-up"



@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. "aivo.services.demo"
    target: str  # imported module (or the module a name is imported from)
    path: str  # file, relative to src/
    line: int
    in_function: bool
    commented: bool  # a "start-up" comment on the line, above it, or above its block of imports
    names: tuple[str, ...] = ()  # the names a `from ... import` takes (empty for `import module`)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _scan(text: str, *, module: str, path: str, is_package: bool = False) -> list[Import]:
    """Every import of one module's source."""
    found: list[Import] = []
    lines = text.splitlines()
    commented_ends: set[int] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.Import):
                    targets, names = [alias.name for alias in child.names], ()
                else:
                    targets, names = [_resolve(child, module, is_package)], tuple(a.name for a in child.names)
                own = " ".join(lines[child.lineno - 1:child.end_lineno])
                above = lines[child.lineno - 2].strip() if child.lineno >= 2 else ""
                commented = ((STARTUP_MARKER in own and "#" in own)
                             or (above.startswith("#") and STARTUP_MARKER in above)
                             or child.lineno - 1 in commented_ends)  # a block under one comment
                if commented:
                    commented_ends.add(child.end_lineno)
                for target in targets:
                    found.append(Import(module, target, path, child.lineno, in_function, commented, names))
            visit(child, inside)

    visit(ast.parse(text, filename=path), False)
    return found


def _imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += _scan(path.read_text(encoding="utf-8"), module=_module_name(path), path=str(path.relative_to(SRC)),
                       is_package=path.name == "__init__.py")
    return found


IMPORTS = _imports()


def _package(module: str) -> str:
    """Top-level package of an aivo module: "aivo.services.demo" -> "services", "aivo" -> ""."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _internal() -> list[Import]:
    return [i for i in IMPORTS if i.target == "aivo" or i.target.startswith("aivo.")]


def _report(title: str, violations) -> str:
    return "\n".join([f"{title}:", *(f"  {item}" for item in sorted(violations))]) if violations else ""


def test_every_package_has_a_layer():
    packages = {_package(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"


def test_dependencies_point_down():
    """No import reaches a higher layer (domain packages never import services; nothing imports
    api or cli)."""
    violations = set()
    for imp in _internal():
        source, target = _package(imp.source), _package(imp.target)
        if source != target and LAYERS[target] > LAYERS[source]:
            violations.add((imp.source, target))
    assert not violations, _report("imports of a higher layer", violations)


def test_packages_form_no_cycle():
    """Within a layer, packages may depend on each other, one way only. (Imports of a higher
    layer are the previous test's business and left out here.)"""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in _internal():
        source, target = _package(imp.source), _package(imp.target)
        if source != target and LAYERS[target] <= LAYERS[source]:
            graph[source].add(target)
    cycles = []
    state: dict[str, int] = {}

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                walk(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert not cycles, "package cycles:\n" + "\n".join(cycles)


def _is_type_or_constant(name: str) -> bool:
    return name[:1].isupper()  # classes (records, schemas, errors) and CONSTANTS; functions are lower case


def test_interfaces_call_only_services():
    """Routers and CLI commands call services (and shared modules): from a domain package or the
    registry they may name types and constants (for annotations, schemas and messages), never
    import a function or a module to call."""
    violations = set()
    for imp in _internal():
        source, target = _package(imp.source), _package(imp.target)
        if source not in INTERFACES or target in (source, "services") or target in SHARED:
            continue
        called = [n for n in imp.names if not _is_type_or_constant(n)] if imp.names else ["<module>"]
        for name in called:
            violations.add((imp.source, f"{imp.target}.{name}"))
    assert not violations, _report("interface imports of something to call around the service layer", violations)


def _transactions_opened(path: Path) -> list[int]:
    """Lines where a module calls `<registry>.run(...)` or `<registry>.session(...)`."""
    return [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("run", "session") and "reg" in ast.unparse(node.func.value)]


def test_interfaces_open_no_transaction():
    """A router or a command never opens a registry session or transaction itself: the service
    it calls owns the transaction."""
    found = {f"{path.relative_to(SRC)}:{line}" for path in PACKAGE.rglob("*.py")
             if _package(_module_name(path)) in INTERFACES for line in _transactions_opened(path)}
    assert not found, _report("interfaces opening a registry transaction", found)


def test_no_function_level_imports_except_for_start_up():
    found = {f"{imp.path}:{imp.line}: {imp.target}" for imp in IMPORTS if imp.in_function and not imp.commented}
    assert not found, _report("imports inside functions without a start-up comment", found)


def _defines_tables(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            if any(isinstance(s, (ast.Assign, ast.AnnAssign)) and any(
                    isinstance(t, ast.Name) and t.id == "__tablename__"
                    for t in (s.targets if isinstance(s, ast.Assign) else [s.target])) for s in node.body):
                return True
        # sa.Table("name", metadata, ...) defines one; reflection (autoload_with=...) only reads one
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Table"
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("sa", "sqlalchemy")
                and not any(k.arg == "autoload_with" for k in node.keywords)):
            return True
    return False


def test_tables_live_in_the_registry():
    outside = {str(p.relative_to(SRC)) for p in PACKAGE.rglob("*.py")
               if _defines_tables(p) and "migrations" not in p.parts
               and p.parent != PACKAGE / "registry" / "tables"}
    assert not outside, f"tables defined outside aivo/registry/tables: {sorted(outside)}"


def test_use_cases_live_in_services():
    """A use case has one home, `aivo.services`: no other package keeps a `service` module
    (use-case code once lived in eight `service.py` / `*_service.py` files around the tree)."""
    elsewhere = {str(p.relative_to(SRC)) for p in PACKAGE.rglob("*.py")
                 if (p.stem == "service" or p.stem.endswith("_service")) and _package(_module_name(p)) != "services"}
    assert not elsewhere, f"service modules outside aivo.services: {sorted(elsewhere)}"


@pytest.mark.parametrize("rule", ["layers", "start-up", "interfaces"])
def test_the_checks_can_fail(rule, tmp_path):
    """The walker sees what it must see (a guard against a check that passes vacuously)."""
    if rule == "layers":
        assert any(i.source.startswith("aivo.services") and i.target.startswith("aivo.registry") for i in IMPORTS)
        assert any(i.source.startswith("aivo.cli") and i.in_function and i.commented for i in IMPORTS)
    elif rule == "interfaces":
        code = "from aivo.registry import MainVersionRecord, open_registry\n\ndef f(reg):\n    reg.run(len)\n"
        path = tmp_path / "x.py"
        path.write_text(code)
        (imp,) = _scan(code, module="aivo.cli.x", path="x.py")
        assert [n for n in imp.names if not _is_type_or_constant(n)] == ["open_registry"]
        assert _transactions_opened(path) == [4]
    else:
        code = ("def f():\n    import json\n\ndef g():\n    # start-up: heavy\n    import torch\n    import peft\n"
                "    x = 1\n    import numpy\n\ndef h():\n    import safetensors  # start-up: loads torch\n")
        flags = {i.target: i.commented for i in _scan(code, module="aivo.x", path="x.py") if i.in_function}
        assert flags == {"json": False, "torch": True, "peft": True, "numpy": False, "safetensors": True}
