"""The house rules, checked on the source with ``ast`` (no import is executed):

* no import cycle among the modules of ``perfmodel`` and ``kernels``;
* arrows point down: each area imports only the areas below it (:data:`ALLOWED`), so the
  model imports no measurement, harness, judge, planner, report or command, and the report
  never imports a command;
* no module imports a private name (``_x``) of another, nor reads one off an imported module;
* a function-local import only for a heavy or side-effecting dependency (:data:`LOCAL_OK`),
  with a comment saying why on its line or the line above;
* no file in ``perfmodel/`` over 600 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("perfmodel", "kernels")
FOUNDATION = ("perfmodel", "perfmodel.results", "perfmodel.provenance", "perfmodel.ui",
              "perfmodel.stats")
#: area -> the areas it may import (itself included)
ALLOWED = {
    "kernels": {"kernels"},
    "foundation": {"foundation", "kernels"},
    "model": {"model", "foundation", "kernels"},
    "measure": {"measure", "foundation", "kernels"},
    "harness": {"harness", "model", "foundation", "kernels"},
    "judge": {"judge", "harness", "measure", "model", "foundation", "kernels"},
    "plan": {"plan", "harness", "model", "foundation", "kernels"},
    "report": {"report", "plan", "judge", "harness", "measure", "model", "foundation",
               "kernels"},
    "cli": {"cli", "report", "plan", "judge", "harness", "measure", "model", "foundation",
            "kernels"},
}
#: what may be imported inside a function: heavy optional peers and plotting (start-up
#: time), and mpi4py.MPI, whose import initialises MPI (only where a rank runs)
LOCAL_OK = ("torch", "torchvision", "onnx", "matplotlib", "seaborn", "mpi4py", "pyarrow")


def area(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    top, _, rest = module.partition(".")
    if top == "kernels":
        return "kernels"
    if module == "perfmodel.__main__":
        return "cli"
    return rest.split(".")[0]


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _base(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_pkg else module.split(".")[:-1]
    parts = parts[:len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


class Import:
    def __init__(self, target: str, name: str | None, line: int, local: bool, alias: str):
        self.target, self.name, self.line, self.local, self.alias = (
            target, name, line, local, alias)


def imports(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import of ``module`` that names a module of the packages: (target module, the
    name taken from it or None, line, inside a function?, local alias)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for a in child.names:
                    out.append(Import(a.name, None, child.lineno, local,
                                      a.asname or a.name.split(".")[0]))
            elif isinstance(child, ast.ImportFrom):
                base = _base(module, is_pkg, child)
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    if sub in known:  # "from pkg import module"
                        out.append(Import(sub, None, child.lineno, local, a.asname or a.name))
                    else:
                        out.append(Import(base, a.name, child.lineno, local,
                                          a.asname or a.name))
            visit(child, inner)

    visit(tree, False)
    return out


def graph(root: Path = ROOT) -> tuple[dict[str, list[Import]], dict[str, Path]]:
    known = modules(root)
    return {m: imports(m, p, known) for m, p in known.items()}, known


def internal(target: str, known: dict[str, Path]) -> bool:
    return target in known


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = dfs(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = dfs(m)
            if found:
                return found
    return None


def _commented(lines: list[str], line: int) -> bool:
    """A comment on the import's line, on the line above, or on an import line of the same
    block above it (``import torch  # why`` then ``from torch import nn``)."""
    k = line - 1
    if "#" in lines[k] or lines[k - 1].strip().startswith("#"):
        return True
    while k > 0 and lines[k - 1].strip().startswith(("import ", "from ")):
        k -= 1
        if "#" in lines[k]:
            return True
    return False


def check(root: Path = ROOT) -> list[str]:
    """Every breach of the house rules under ``root``, one line each."""
    g, known = graph(root)
    problems = []
    edges: dict[str, set[str]] = {}
    for m, imps in g.items():
        path = known[m].relative_to(root)
        lines = known[m].read_text().splitlines()
        module_aliases = {i.alias for i in imps if i.name is None and internal(i.target, known)}
        for i in imps:
            if internal(i.target, known):
                if i.target != m:
                    edges.setdefault(m, set()).add(i.target)
                if area(i.target) not in ALLOWED[area(m)]:
                    problems.append(f"{path}:{i.line}: {area(m)} imports {i.target} "
                                    f"({area(i.target)}): an arrow upwards")
                if i.name and i.name.startswith("_") and not i.name.startswith("__"):
                    problems.append(f"{path}:{i.line}: imports the private name {i.name} "
                                    f"of {i.target}")
            if i.target.split(".")[-1].startswith("_") and internal(i.target, known) and \
                    not i.target.endswith("__main__"):
                problems.append(f"{path}:{i.line}: imports the private module {i.target}")
            if i.local:
                top = i.target.split(".")[0]
                said = _commented(lines, i.line)
                if top not in LOCAL_OK:
                    problems.append(f"{path}:{i.line}: function-local import of {i.target} "
                                    "(allowed inside a function: " + ", ".join(LOCAL_OK) + ")")
                elif not said:
                    problems.append(f"{path}:{i.line}: function-local import of {i.target} "
                                    "without a comment saying why")
        for node in ast.walk(ast.parse(known[m].read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in module_aliases and node.attr.startswith("_") and \
                    not node.attr.startswith("__"):
                problems.append(f"{path}:{node.lineno}: reads the private name "
                                f"{node.value.id}.{node.attr}")
    cycle = find_cycle(edges)
    if cycle:
        problems.append("import cycle: " + " -> ".join(cycle))
    return problems


def test_the_house_rules_hold():
    assert check() == []


@pytest.mark.parametrize("f", sorted((ROOT / "perfmodel").rglob("*.py")),
                         ids=lambda f: str(f.relative_to(ROOT)))
def test_no_file_over_600_lines(f):
    assert len(f.read_text().splitlines()) <= 600


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (tmp_path / "kernels").mkdir(exist_ok=True)
    (tmp_path / "kernels" / "__init__.py").touch()
    return tmp_path


def test_the_check_finds_a_cycle(tmp_path):
    root = _tree(tmp_path, {
        "perfmodel/__init__.py": "",
        "perfmodel/model/__init__.py": "",
        "perfmodel/model/a.py": "from . import b\n",
        "perfmodel/model/b.py": "from .c import f\n",
        "perfmodel/model/c.py": "from .a import g\n"})
    assert check(root) == ["import cycle: perfmodel.model.a -> perfmodel.model.b -> "
                           "perfmodel.model.c -> perfmodel.model.a"]


def test_the_check_finds_arrows_up_private_names_and_hidden_imports(tmp_path):
    root = _tree(tmp_path, {
        "perfmodel/__init__.py": "",
        "perfmodel/ui.py": "",
        "perfmodel/model/__init__.py": "",
        "perfmodel/model/a.py": "from ..report import r\n",
        "perfmodel/report/__init__.py": "",
        "perfmodel/report/r.py": "from ..cli import c\nfrom ..model.a import _x\n",
        "perfmodel/cli/__init__.py": "",
        "perfmodel/cli/c.py": ("from ..model import a\n\ndef f():\n    import seaborn\n"
                               "    from ..ui import thing\n    return a._y\n")})
    found = "\n".join(check(root))
    assert "perfmodel/model/a.py:1: model imports perfmodel.report.r (report)" in found
    assert "perfmodel/report/r.py:1: report imports perfmodel.cli.c (cli)" in found
    assert "imports the private name _x of perfmodel.model.a" in found
    assert "perfmodel/cli/c.py:4: function-local import of seaborn without a comment" in found
    assert "perfmodel/cli/c.py:5: function-local import of perfmodel.ui" in found
    assert "reads the private name a._y" in found
    assert "import cycle" in found  # model.a -> report.r -> model.a
