"""The house's floors (ARCHITECTURE.md), read from the source: imports go down a floor or stay on it, the room
graph has no cycle, the one upward import is the documented one, and no private name crosses rooms."""

from __future__ import annotations

import ast
from pathlib import Path

import m3rt

PACKAGE = Path(m3rt.__file__).parent
# Rooms (a top-level module or package of m3rt) by floor, lowest first: a room imports rooms on its floor or below.
FLOORS = [
    {"version", "errors", "options", "locking", "onnx_file"},
    {"artifact"},
    {"kernels"},
    {"runtime", "m3rt"},  # "m3rt": the package itself, the runtime's public face
    {"export", "testing"},
    {"pretrained"},
    {"corpus", "serve", "integrations", "bench", "doctor", "demo"},
    {"ray"},
    {"cli"},
]
# The one import up a floor: M3Runtime.from_pretrained exports a model (inside the method, on a cache miss).
UPWARD = {("runtime", "pretrained")}


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "m3rt"


def floor_of(room: str) -> int:
    return next(i for i, rooms in enumerate(FLOORS) if room in rooms)


def imports() -> list[tuple[str, str, str, list[str]]]:
    """(importing room, imported module, file, names) for every import of m3rt inside m3rt, lazy ones included."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [a.name for a in node.names]
                if node.module == "m3rt":  # from m3rt import x: the submodule x, or the package's own names
                    targets = [(f"m3rt.{n}" if (PACKAGE / n).exists() or (PACKAGE / f"{n}.py").exists()
                                else "m3rt", [n]) for n in names]
                else:
                    targets = [(node.module, names)]
            else:
                continue
            for target, names in targets:
                if target == "m3rt" or target.startswith("m3rt."):
                    found.append((room_of(module), target, str(path.relative_to(PACKAGE)), names))
    return found


def test_every_room_is_on_a_floor():
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    placed = set().union(*FLOORS)
    assert rooms - placed == set(), "a new room: put it on a floor here and in ARCHITECTURE.md"


def test_imports_go_down_or_stay_on_their_floor():
    upward = set()
    for room, target, path, _ in imports():
        to = room_of(target)
        if floor_of(to) > floor_of(room):
            upward.add((room, to, path))
    assert {(a, b) for a, b, _ in upward} <= UPWARD, sorted(upward)
    # The documented exception stays inside one method of the runtime.
    assert {p for _, _, p in upward} <= {"runtime/m3.py"}


def test_no_cycle_between_rooms():
    edges = {(room, room_of(t)) for room, t, _, _ in imports() if room != room_of(t)} - UPWARD
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    seen, stack = set(), set()

    def visit(node, trail):
        assert node not in stack, f"cycle: {' -> '.join(trail + [node])}"
        if node in seen:
            return
        seen.add(node)
        stack.add(node)
        for nxt in graph.get(node, ()):
            visit(nxt, trail + [node])
        stack.discard(node)

    for node in list(graph):
        visit(node, [])


def test_no_private_name_crosses_rooms():
    crossing = [f"{path}: {target}.{n}" for room, target, path, names in imports() for n in names
                if n.startswith("_") and not n.startswith("__") and room_of(target) != room]
    assert crossing == []
