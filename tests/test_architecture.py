"""The package's layers: imports run one way (no circle, no upward arrow), and light entry points stay light.

The graph is read statically from every ``import`` statement (module level and inside functions), so a circle
hidden in a function-level import counts as much as one at the top.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "discolib"

#: Bottom to top. A module may import its own layer (without a circle) and the layers below it, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("discolib.errors", "discolib.ops"),
    ("discolib.io",),
    ("discolib.schedules",),
    ("discolib.audio",),
    ("discolib.config",),
    ("discolib.models",),
    ("discolib.guidance",),
    ("discolib.animation",),
    ("discolib.samplers",),
    ("discolib.run",),
    ("discolib.cli", "discolib.__main__", "discolib"),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported discolib module, line, at module level) for every import statement in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for node in tree.body:  # imports under a module-level `if TYPE_CHECKING:` / try: still count as top level
        if isinstance(node, (ast.If, ast.Try)):
            top.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from discolib.pkg import mod` imports discolib.pkg.mod when that is a module
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
        for name in names:
            if name == "discolib" or name.startswith("discolib."):
                found.append((name, node.lineno, id(node) in top))
    return found


def _rank(module: str) -> int:
    best = (-1, -1)
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                best = max(best, (len(prefix), rank))
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for name, _, _ in _imports(path, modules):
            if name != mod and name in modules:
                graph[mod].add(name)
    return graph


def test_every_module_is_in_a_layer() -> None:
    for mod in _modules():
        _rank(mod)


def test_no_upward_import() -> None:
    modules = _modules()
    bad = []
    for mod, path in modules.items():
        for name, line, _ in _imports(path, modules):
            if name in modules and _rank(name) > _rank(mod):
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {mod} imports {name} from a higher layer")
    assert not bad, "\n".join(bad)


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if n.startswith(m + ".") or m.startswith(n + "."):
                continue  # a package and its own modules (``__init__`` re-exports) are one unit
            if state.get(n) == 1:
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


def test_function_level_imports_say_why() -> None:
    """A function-level import hides the graph: each one carries a comment on its line or the line above."""
    modules = _modules()
    bare = []
    for path in modules.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for _, line, top in _imports(path, modules):
            if top:
                continue
            here, above = lines[line - 1], lines[line - 2] if line >= 2 else ""
            if "#" not in here and not above.strip().startswith("#"):
                bare.append(f"{path.relative_to(PKG.parent)}:{line}: {here.strip()}")
    assert not bare, "function-level imports without a comment saying why:\n" + "\n".join(bare)


_PROBE = """
import json, sys
before = set(sys.modules)
{code}
heavy = ("torch", "diffusers", "transformers", "open_clip", "kornia", "ipywidgets", "matplotlib", "accelerate")
print(json.dumps(sorted({{m.split(".")[0] for m in set(sys.modules) - before}} & set(heavy))))
"""


@pytest.mark.parametrize(
    "code",
    [
        "import discolib",
        "from discolib import Settings, apply_preset",
        # a real Deforum 3D file through `discolib validate`: every schedule, prompt and path checked
        "import os, tempfile\nfrom discolib.cli import main\npath = os.path.join(tempfile.mkdtemp(), 's.json')\n"
        "assert main(['init', '--mode', 'latent', '--animation', '3D', '-o', path]) == 0\n"
        "assert main(['validate', path]) == 0",
    ],
    ids=["import", "settings", "validate"],
)
def test_light_entry_points_import_no_heavy_library(code: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(code=code)],
        capture_output=True,
        text=True,
        input="{}",
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [], f"{code!r} imported heavy libraries"
