"""The layering rules of docs/architecture.md, read from the imports of lab/.

Every import counts, at module level or inside a function (a late import that goes
the wrong way is still the wrong way); only ``if TYPE_CHECKING:`` blocks are exempt.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO

LEAVES = {"lab.spec", "lab.paths", "lab.errors", "lab.nodes", "lab.plan", "lab.state",
          "lab.secrets", "lab.output"}  # fmt: skip
# (who, what it must not import, why)
RULES = [
    ({"lab.render", "lab.phases", "lab.remote", "lab.plan", "lab.state"}, {"lab.providers"},
     "render, phases and remote know no provider: capabilities arrive by value"),
    ({"lab.host", "lab.images"}, {"lab.providers", "lab.phases", "lab.engine", "lab.workflow"},
     "the host side lies below the providers"),
    ({"lab.providers"}, {"lab.phases", "lab.engine", "lab.workflow"},
     "providers only make nodes"),
    ({"lab"}, {"lab.providers.vagrant"},
     "only the libvirt provider builds on the vagrant provider"),
    ({"lab"}, {"lab.providers.local"},
     "nothing builds on the local provider: shared host code lives in lab.host"),
    ({"lab.drills"}, {"lab.workflow", "lab.engine", "lab.phases"},
     "a drill meets the lab through its provider and SSH; workflow composes it"),
    ({"lab"}, {"lab.classroom"},
     "a class is built on labs: nothing below it knows of classes"),
    ({"lab.classroom"}, {"lab.engine", "lab.providers", "lab.drills"},
     "a class meets its labs through `inv lab.*`, workflow's status and the host side"),
]  # fmt: skip
ALLOWED = {  # (importer prefix, imported prefix) exceptions to the rules above
    ("lab.providers.libvirt", "lab.providers.vagrant"),
    ("lab.providers.vagrant", "lab.providers.vagrant"),
    ("lab.providers.local", "lab.providers.local"),
    ("lab.classroom", "lab.classroom"),
}


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, root: Path) -> set[str]:
    """Modules of the kit that ``path`` imports (``from pkg import submodule`` names the
    submodule), TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                package = root.parent / candidate.replace(".", "/")
                is_module = package.with_suffix(".py").exists() or package.is_dir()
                found.add(candidate if is_module else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name == "lab" or name.startswith("lab.")}


def import_graph(root: Path) -> dict[str, set[str]]:
    return {module_name(root, p): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imported in graph.items():
        for who, forbidden, why in RULES:
            if not any(_under(module, w) for w in who):
                continue
            for target in imported:
                if any(_under(target, f) for f in forbidden) and not any(
                    _under(module, a) and _under(target, b) for a, b in ALLOWED
                ):
                    found.append(f"{module} imports {target}: {why}")
        if module in LEAVES:
            found += [f"{module} imports {t}: a leaf imports only leaves"
                      for t in imported if t not in LEAVES]  # fmt: skip
    return sorted(found)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among the kit's modules (depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state and target in graph:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module)
    return found


def test_no_import_goes_the_wrong_way() -> None:
    assert violations(import_graph(REPO / "lab")) == []


def test_no_import_cycle() -> None:
    assert cycles(import_graph(REPO / "lab")) == []


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("render.py", "from lab.providers.local import LocalProvider",
         "lab.render imports lab.providers.local"),
        ("host/bridge.py", "from lab.engine import Engine", "lab.host.bridge imports lab.engine"),
        ("spec.py", "import lab.render", "lab.spec imports lab.render: a leaf"),
        ("workflow.py", "from lab.classroom import runner", "lab.workflow imports lab.classroom"),
        ("classroom/status.py", "from lab.providers.local import LocalProvider",
         "lab.classroom.status imports lab.providers.local"),
        ("providers/libvirt/nfs.py", "from lab.providers.local import LocalProvider",
         "lab.providers.libvirt.nfs imports lab.providers.local"),
    ],
)  # fmt: skip
def test_a_forbidden_import_is_caught(
    tmp_path: Path, module: str, line: str, expected: str
) -> None:
    """The checker itself: the same tree with one wrong import added fails the rules."""
    copy = tmp_path / "lab"
    shutil.copytree(REPO / "lab", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}\n")
    assert any(v.startswith(expected) for v in violations(import_graph(copy)))


def test_a_cycle_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "lab"
    shutil.copytree(REPO / "lab", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "nodes.py").write_text((copy / "nodes.py").read_text() + "\nimport lab.remote\n")
    assert any("lab.nodes" in cycle for cycle in cycles(import_graph(copy)))
