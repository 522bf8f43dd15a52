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


def imports_of(path: Path, source: str | None = None) -> list[Import]:
    """Every import of the module at ``path`` (read unless ``source`` is given), as absolute names
    (``from a import b`` gives both ``a`` and ``a.b``)."""
    module = module_name(path)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, top) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            found.append(Import(base, node.lineno, top))
            found.extend(Import(f"{base}.{a.name}", node.lineno, top) for a in node.names if a.name != "*")
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for field, value in ast.iter_fields(node):
            children = value if isinstance(value, list) else [value]
            lazy = isinstance(node, ast.If) and field == "body" and _is_type_checking(node.test)
            for child in children:
                if isinstance(child, ast.AST):
                    visit(child, inner and not lazy)

    visit(ast.parse(path.read_text() if source is None else source, filename=str(path)), True)
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
