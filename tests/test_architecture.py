"""The import graph of nextvox, read with ``ast``: no circle, no private name used across modules,
and imports that point one way through the layers of docs/architecture.md.

Every ``import`` counts, at module level or inside a function: an import moved into a function
to dodge a circle is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nextvox"

# The layers, lowest first (docs/architecture.md). A module may import its own layer and those
# below it, never one above. Names are relative to nextvox; a name ending in "." covers a package.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("", "constants", "errors", "files", "processes", "workers", "labels")),
    ("dsp", ("audio", "features", "augmentations", "losses", "melody_match", "alignment_kernel")),
    ("models", ("models", "models.")),
    ("separation", ("separation",)),
    ("store", ("catalogue", "catalogue.", "index")),
    ("engines", ("distributed",)),
    ("analysis", ("analysis",)),
    ("gender", ("gender",)),
    ("search", ("recommend", "recommend.", "playlists", "voicepath")),
    ("evaluation, training, plots", ("evaluation", "evaluation.", "training", "training.", "plots")),
    ("workflows", ("workflows",)),
    ("interfaces", ("cli", "cli.", "__main__", "api", "api.", "integrations", "integrations.")),
]
# The song generator is a program of its own beside the pipeline: it uses the base layer only.
SYNTH = ("synth", "synth.")
# Its own layers (docs/architecture.md), lowest first: the voice registry and the WORLD note loop
# at the bottom, so that the singing methods meet there and never import each other in a circle.
SYNTH_LAYERS: list[tuple[str, ...]] = [
    ("synth.voices", "synth.world", "synth.melodies", "synth.effects"),
    ("synth.syllables", "synth.accompaniment"),
    ("synth.singing", "synth.mbrola", "synth.production"),
    ("synth.plan",),
    ("synth.library",),
    ("synth",),
]


def module_files() -> dict[str, Path]:
    """Module name relative to nextvox ("" for the package itself) -> its file."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The module that an imported dotted name (relative to nextvox) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """(module -> the nextvox modules it imports, ["module imports other._private"])."""
    modules = module_files()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private: list[str] = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module_aliases: dict[str, str] = {}  # a local name bound to another nextvox module -> that module
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "nextvox" or alias.name.startswith("nextvox."):
                        target = _resolve(alias.name.removeprefix("nextvox").lstrip("."), modules)
                        edges[name].add(target)
                        if alias.asname:
                            module_aliases[alias.asname] = target
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from .x import y
                    base = package
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    base = ".".join(p for p in (base, node.module or "") if p)
                elif node.module == "nextvox" or (node.module or "").startswith("nextvox."):
                    base = node.module.removeprefix("nextvox").lstrip(".")
                else:
                    continue
                for alias in node.names:
                    full = ".".join(p for p in (base, alias.name) if p)
                    if full in modules:  # from nextvox.models import tcae: the submodule
                        edges[name].add(full)
                        module_aliases[alias.asname or alias.name] = full
                        continue
                    target = _resolve(base, modules)
                    edges[name].add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__") and target != name:
                        private.append(f"nextvox.{name} imports {alias.name} from nextvox.{target}")
        for node in ast.walk(tree):  # tcae._private: a private name reached through a module
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and module_aliases[node.value.id] != name):  # fmt: skip
                private.append(f"nextvox.{name} uses {node.attr} of nextvox.{module_aliases[node.value.id]}")
        edges[name].discard(name)
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p or (p.endswith(".") and name.startswith(p)) for p in patterns)


def layer_of(name: str) -> int | None:
    for rank, (_, patterns) in enumerate(LAYERS):
        if _matches(name, patterns):
            return rank
    return None


def test_the_graph_reader_sees_imports_inside_functions_and_relative_ones() -> None:
    edges, _ = import_graph()
    assert "analysis" in edges["workflows"] and "gender" in edges["workflows"]
    assert "api.service" in edges["api.deps"]
    assert edges["__main__"] == {"cli"}
    assert "training" in edges["cli.train"]  # imported inside the command functions


def test_no_import_circle() -> None:
    edges, _ = import_graph()
    found = cycles(edges)
    described = ["; ".join(f"{m} -> {', '.join(sorted(edges[m] & set(c)))}" for m in c) for c in found]
    assert not found, "import circles:\n" + "\n".join(described)


def test_no_private_name_is_imported_from_another_module() -> None:
    _, private = import_graph()
    assert not private, "\n".join(private)


def test_imports_point_down_the_layers() -> None:
    edges, _ = import_graph()
    upward = []
    for name, targets in sorted(edges.items()):
        if _matches(name, SYNTH):
            upward += [f"{name} -> {t} (the generator uses the base layer only)" for t in sorted(targets)
                       if not _matches(t, SYNTH) and layer_of(t) != 0]  # fmt: skip
            continue
        rank = layer_of(name)
        assert rank is not None, f"nextvox.{name} is in no layer: place it in LAYERS (and in docs/architecture.md)"
        for target in sorted(targets):
            target_rank = layer_of(target)
            if target_rank is not None and target_rank > rank:
                upward.append(f"{name} ({LAYERS[rank][0]}) -> {target} ({LAYERS[target_rank][0]})")
    assert not upward, "imports pointing up a layer:\n" + "\n".join(upward)


def test_the_song_generator_keeps_its_own_layers() -> None:
    edges, _ = import_graph()
    placed = {name: rank for rank, names in enumerate(SYNTH_LAYERS) for name in names}
    synth_modules = {name for name in edges if _matches(name, SYNTH)}
    assert synth_modules == set(placed), "place every synth module in SYNTH_LAYERS"
    upward = [f"{name} -> {target}" for name in sorted(synth_modules) for target in sorted(edges[name] & synth_modules)
              if placed[target] >= placed[name]]  # fmt: skip
    assert not upward, "synth imports that point up or across its layers:\n" + "\n".join(upward)
