"""Imports point one way (docs/ARCHITECTURE.md): walk the AST of every module and check them.

Every ``import x`` and ``from x import y`` counts, wherever it is (module top level,
inside functions, under ``if TYPE_CHECKING:``), so a lazy import cannot hide a
dependency that the layering forbids.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import avscene

PACKAGE_ROOT = Path(avscene.__file__).resolve().parent
PACKAGE = "avscene"

# layer -> layers it must never import (a layer is a module or a package prefix)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "avscene.nn": ("avscene.io", "avscene.tasks", "avscene.train", "avscene.cli"),
    "avscene.dsp": ("avscene.nn", "avscene.tasks", "avscene.train", "avscene.cli", "avscene.io"),
    "avscene.proposals": ("avscene.nn", "avscene.tasks", "avscene.train", "avscene.cli", "avscene.io"),
    "avscene.io": ("avscene.nn", "avscene.tasks", "avscene.train", "avscene.cli"),
    "avscene.tasks": ("avscene.train", "avscene.cli"),
    # separation: below the tasks that run it; its maths (ranking, dictionary) is pure
    "avscene.separation": ("avscene.tasks", "avscene.train", "avscene.cli", "avscene.doctor"),
    # the model card text: reads configs, never loads, runs or trains anything
    "avscene.hub_card": ("avscene.io", "avscene.tasks", "avscene.train", "avscene.cli", "avscene.hub",
                         "avscene.doctor"),
    "avscene.train": ("avscene.cli",),
    "avscene.hub": ("avscene.tasks", "avscene.train", "avscene.cli", "avscene.doctor"),
    "avscene.hub_push": ("avscene.tasks", "avscene.train", "avscene.cli", "avscene.doctor"),
    # checks the installation through the library; the CLI only renders its report
    "avscene.doctor": ("avscene.train", "avscene.cli"),
    # tiny models and generated media for tests: built from the library, never from its front ends
    "avscene.testing": ("avscene.tasks", "avscene.train", "avscene.cli", "avscene.doctor"),
}
UPPER_LAYERS = ("avscene.io", "avscene.dsp", "avscene.proposals", "avscene.nn", "avscene.hub", "avscene.tasks",
                "avscene.train", "avscene.cli")
for _base in ("avscene.results", "avscene.errors", "avscene.config", "avscene.timing"):  # the bottom: imported by all
    FORBIDDEN[_base] = UPPER_LAYERS
CLI_IMPORTERS = ("avscene.cli", "avscene.__main__")  # the only modules that may import avscene.cli
PURE_LAYERS = ("avscene.dsp", "avscene.proposals")  # no torch modules here: arrays in, arrays out


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name of what is imported
    line: int
    top_level: bool  # executed at module import (not inside a function, not under TYPE_CHECKING)
    type_only: bool = False  # under ``if TYPE_CHECKING:``: never executed


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, source: str | None = None, module: str | None = None) -> list[Import]:
    """Every import of the module at ``path`` (read unless ``source`` is given), as absolute names
    (``from a import b`` gives both ``a`` and ``a.b``)."""
    module = module or module_name(path)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, top: bool, typing_only: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, top, typing_only) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            found.append(Import(base, node.lineno, top, typing_only))
            found.extend(Import(f"{base}.{a.name}", node.lineno, top, typing_only)
                         for a in node.names if a.name != "*")
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for field, value in ast.iter_fields(node):
            children = value if isinstance(value, list) else [value]
            lazy = isinstance(node, ast.If) and field == "body" and _is_type_checking(node.test)
            for child in children:
                if isinstance(child, ast.AST):
                    visit(child, inner and not lazy, typing_only or lazy)

    visit(ast.parse(path.read_text() if source is None else source, filename=str(path)), True, False)
    return found


def within(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


def violations(rule: str, bad: list[tuple[str, Import]]) -> str:
    return f"{rule}:\n" + "\n".join(f"  {m} line {i.line} imports {i.module}" for m, i in bad)


MODULES = all_modules()


def test_walker_sees_every_kind_of_import(tmp_path):
    # the walker itself, on a file whose imports are known
    code = (
        "from __future__ import annotations\n"
        "import os.path\n"
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..io.decode import decode\n"
        "if TYPE_CHECKING:\n"
        "    from avscene.nn.model import AVSceneNet\n"
        "def f():\n"
        "    import avscene.cli.app\n"
        "    class Inner:\n"
        "        from avscene import train\n"
    )
    fake = PACKAGE_ROOT / "tasks" / "_layering_probe.py"  # never written: only names the module
    found = {(i.module, i.top_level) for i in imports_of(fake, code)}
    assert ("os.path", True) in found
    assert ("avscene.tasks.sibling", True) in found
    assert ("avscene.io.decode", True) in found and ("avscene.io.decode.decode", True) in found
    assert ("avscene.nn.model", False) in found
    assert ("avscene.cli.app", False) in found
    assert ("avscene.train", False) in found


def test_modules_found():
    for expected in ("avscene", "avscene.__main__", "avscene.cli.app", "avscene.nn.model", "avscene.io.decode",
                     "avscene.dsp.mel", "avscene.proposals.visual", "avscene.tasks.classify", "avscene.train.loop",
                     "avscene.hub"):
        assert expected in MODULES


def test_nothing_imports_cli():
    bad = [(m, i) for m, p in MODULES.items() if not any(within(m, c) for c in CLI_IMPORTERS)
           for i in imports_of(p) if within(i.module, "avscene.cli")]
    assert not bad, violations("only avscene.cli.* and avscene.__main__ may import avscene.cli", bad)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_upwards(layer):
    bad = [(m, i) for m, p in MODULES.items() if within(m, layer)
           for i in imports_of(p) if any(within(i.module, f) for f in FORBIDDEN[layer])]
    assert not bad, violations(f"{layer} must not import {', '.join(FORBIDDEN[layer])}", bad)


def _torch_module_bases(path: Path) -> list[tuple[str, int]]:
    """Classes deriving from ``nn.Module`` / ``torch.nn.Module`` / an imported ``Module``."""
    tree = ast.parse(path.read_text())
    module_aliases = {"Module"} if any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("torch")
                                       and any(a.name == "Module" for a in n.names) for n in ast.walk(tree)) else set()
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for b in node.bases:
            text = ast.unparse(b)
            if text.endswith("nn.Module") or text in module_aliases:
                out.append((node.name, node.lineno))
    return out


@pytest.mark.parametrize("layer", PURE_LAYERS)
def test_pure_layers_have_no_torch_modules(layer):
    bad = [(m, c) for m, p in MODULES.items() if within(m, layer) for c in _torch_module_bases(p)]
    assert not bad, f"{layer} must not define nn.Module subclasses: {bad}"
    assert _torch_module_bases(PACKAGE_ROOT / "nn" / "model.py")  # the detector does detect them


def test_hub_imports_nn_only_lazily():
    eager = [i for i in imports_of(MODULES["avscene.hub"]) if within(i.module, "avscene.nn") and i.top_level]
    assert not eager, f"avscene.hub imports avscene.nn at import time: {eager}"
    assert not [i for i in imports_of(MODULES["avscene.hub"])
                if any(within(i.module, x) for x in ("avscene.cli", "avscene.tasks", "avscene.train"))]


def test_import_avscene_does_not_import_torch():
    code = "import sys, avscene, avscene.results, avscene.errors, avscene.config; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def import_graph(modules: dict[str, Path], sources: dict[str, str] | None = None) -> dict[str, set[str]]:
    """module -> the avscene modules it imports when run, wherever the import is (lazy ones
    inside functions included; ``if TYPE_CHECKING:`` ones, never executed, left out).

    ``from a import b`` is an edge to ``a.b`` when that is a module, else to ``a``."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for imp in imports_of(path, None if sources is None else sources.get(name), name):
            if not within(imp.module, PACKAGE) or imp.type_only:
                continue
            target = imp.module
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                edges.add(target)
        graph[name] = edges
    # ``from a import b`` also yields ``a``: drop it when ``a.b`` was the real target
    for name, path in modules.items():
        for imp in imports_of(path, None if sources is None else sources.get(name), name):
            if imp.module in modules and imp.module in graph[name] and any(
                    t.startswith(imp.module + ".") for t in graph[name]) and modules[imp.module].name == "__init__.py":
                graph[name].discard(imp.module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_lazy_imports_included():
    found = cycles(import_graph(MODULES))
    assert not found, "import cycles (lazy imports count too):\n" + "\n".join("  " + " <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle_it_is_given(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    for p in (a, b, c):
        p.write_text("")
    modules = {"avscene.fake_a": a, "avscene.fake_b": b, "avscene.fake_c": c}
    sources = {"avscene.fake_a": "import avscene.fake_b\n",
               "avscene.fake_b": "def f():\n    from avscene.fake_a import x\n",  # lazy, still a cycle
               "avscene.fake_c": "import avscene.fake_a\n"}
    graph = import_graph(modules, sources)
    assert cycles(graph) == [["avscene.fake_a", "avscene.fake_b"]]
    sources["avscene.fake_b"] = ""
    assert cycles(import_graph(modules, sources)) == []


def test_every_top_level_module_has_a_rule():
    """A new top-level module or package must say where it sits (the CLI and the package's
    own entry points sit on top and import what they need)."""
    top = {".".join(name.split(".")[:2]) for name in MODULES if name != PACKAGE}
    exempt = {"avscene.__main__", "avscene.cli"}
    assert sorted(top - exempt - set(FORBIDDEN)) == []


def test_the_public_api_is_typed_without_any():
    """The Python API says what it takes and returns (annotations are strings here)."""
    import inspect

    from avscene.tasks import runner

    for fn in (avscene.load_model, avscene.classify, avscene.localize, avscene.separate, runner.run_batch,
               runner.run_one):
        sig = inspect.signature(fn)
        annotations = [p.annotation for p in sig.parameters.values()] + [sig.return_annotation]
        assert inspect.Signature.empty not in annotations[-1:], f"{fn.__name__} has no return type"
        assert not any("Any" in str(a) for a in annotations), f"{fn.__name__}: {sig}"
