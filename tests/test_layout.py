"""The package's layers: imports run one way only, and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "emotion"
# A layer may import its own and the ones before it, never one after it; any may
# import the package's root (emotion/__init__.py holds nothing but the version).
LAYERS = ("core", "media", "models", "serve", "stages")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)       # and "from emotion.core import labels":
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n == "emotion" or n.startswith("emotion.")]


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p
            for p in PACKAGE.rglob("*.py")}


def test_every_module_lives_in_a_layer():
    loose = [name for name in _modules()
             if name.count(".") < 2 and name != "emotion.__init__"
             and name.split(".")[1] not in LAYERS]
    assert loose == []


def test_imports_run_downwards_only():
    upward = []
    modules = _modules()
    for name, path in modules.items():
        if name.count(".") < 2:
            continue
        layer = LAYERS.index(name.split(".")[1])
        for target in _imports(path):
            if target not in modules and target + ".__init__" not in modules:
                continue                            # a name imported from a module
            parts = target.split(".")
            if len(parts) < 2:
                continue                            # the package's root: its version only
            if parts[1] not in LAYERS or LAYERS.index(parts[1]) > layer:
                upward.append((name, target))
    assert upward == []


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = {name: {t for t in _imports(path) if t in modules} for name, path in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for nxt in graph.get(node, ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    cycles = [name for name in graph if reaches(name, name)]
    assert cycles == []


def test_the_package_never_imports_the_root_scripts():
    """The scripts at the repository root wrap the package; an installed package
    (pip install .) has no root scripts to import."""
    scripts = {p.stem for p in PACKAGE.parent.glob("*.py")}
    found = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(name, a.name) for a in node.names if a.name.split(".")[0] in scripts]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] in scripts:
                found.append((name, node.module))
    assert found == []
