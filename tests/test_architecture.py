"""The shape of the house, checked: layers point down, no import cycles, packages listed, modules
of a readable size, templates in one place.

Imports are read from the source with `ast` -- module level and inside functions, including
`if TYPE_CHECKING:` blocks -- so a function-level import cannot hide a cycle or a wrong-way
dependency.  The layers, lowest first:

    base        errors, display, colour, progress, terminal, atomic, runner, shellgen,
                bindspec, record, names, condatainer (the package)
    image       the env.img file: knows no container, no shell, no job
    config      the configuration (validates sizes and profiles with image/)
    micromamba  condatainer's micromamba: where it is, fetching it (knows no container)
    run         Request -> Plan -> runtime
    jobs, hook  job scripts; host shell integration -- peers that never import each other
    top         the orchestrators: doctor, provision, newenv, session, completion, completers,
                purge
    cli         the command line: cli, usage (wrong command lines), examples, manpage, entry
                (where a process starts: the exec fast path) and __main__

A module may import its own layer and the layers below.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "condatainer"

LAYERS = {
    "base": 0,
    "image": 1,
    "config": 2,
    "micromamba": 3,
    "run": 4,
    "jobs": 5,
    "hook": 5,
    "top": 6,
    "cli": 7,
}
BASE = {
    "condatainer", "errors", "display", "colour", "progress", "terminal", "atomic", "runner",
    "shellgen", "bindspec", "shell", "record", "names", "memo", "signals", "xdg", "jsontext",
}  # fmt: skip
TOP = {"doctor", "provision", "newenv", "session", "completion", "completers", "purge"}
CLI = {"cli", "usage", "examples", "manpage", "entry", "__main__"}
MAX_LINES = 500


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert "condatainer.cli" in found
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else "condatainer"
    if first in BASE:
        return "base"
    if first in TOP:
        return "top"
    if first in CLI:
        return "cli"
    if first in LAYERS:
        return first
    raise AssertionError(f"{module}: not placed in a layer; add it to tests/test_architecture.py")


def imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported condatainer module, line) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "condatainer":
                    yield _known(alias.name, known), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "condatainer":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in known else _known(base, known)), node.lineno


def _known(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    edges: dict[str, set[str]] = {m: set() for m in found}
    for module, path in found.items():
        for target, _ in imports(module, path, known):
            if target != module:
                edges[module].add(target)
    return edges


def test_every_module_is_in_a_layer() -> None:
    for module in modules():
        layer(module)


def test_layers_only_point_down() -> None:
    found = modules()
    known = set(found)
    wrong: list[str] = []
    for module, path in found.items():
        mine = layer(module)
        for target, line in imports(module, path, known):
            theirs = layer(target)
            if LAYERS[theirs] > LAYERS[mine] or (LAYERS[theirs] == LAYERS[mine] and theirs != mine):
                wrong.append(
                    f"{path.relative_to(REPO)}:{line}: {module} ({mine}) imports"
                    f" {target} ({theirs})"
                )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: any component of two or more is a cycle."""
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    """The graph must not be blind to the imports that used to hide cycles."""
    sample = tmp_path / "condatainer" / "hook" / "x.py"
    sample.parent.mkdir(parents=True)
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from condatainer.jobs import script\n"
        "def f():\n    from condatainer.hook import init\n    from . import shims\n"
    )
    known = {"condatainer.jobs.script", "condatainer.hook.init", "condatainer.hook.shims"}
    found = {t for t, _ in imports("condatainer.hook.x", sample, known)}
    assert found == known


def test_pyproject_lists_every_package() -> None:
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    present = {
        module_name(p.parent) for p in PACKAGE.rglob("__init__.py") if "__pycache__" not in p.parts
    }
    assert listed == present | {"condatainer.shell"}


def test_every_template_lives_in_shell() -> None:
    assert not list(PACKAGE.rglob("*.j2")), "templates belong in the top-level shell/"
    templates = sorted(p.name for p in (REPO / "shell").glob("*.j2"))
    assert templates and all(re.fullmatch(r"[a-z-]+\.(bash|zsh|fish|sh)\.j2", t) for t in templates)


@pytest.mark.parametrize("module", sorted(modules()))
def test_long_modules_say_why(module: str) -> None:
    path = modules()[module]
    lines = path.read_text(encoding="utf-8").count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert "Long on purpose" in doc, (
        f"{path.relative_to(REPO)} has {lines} lines: split it along its seams, or say in its"
        " docstring why it is one cohesive thing ('Long on purpose: ...')"
    )
