"""The house rules: imports run only down the layers, and no package imports itself back in a cycle."""

import ast
from pathlib import Path

import deploykit

PACKAGE = Path(deploykit.__file__).parent
# Top to bottom; a module may import its own layer or any layer below it (docs/ARCHITECTURE.md).
LAYERS = [
    ("deploykit.cli", "deploykit.cli_types", "deploykit.cli_options", "deploykit.cli_render", "deploykit.cli_render_bench", "deploykit.__main__"),
    ("deploykit.recipes",),
    ("deploykit.compress", "deploykit.export", "deploykit.bench", "deploykit.serve"),
    ("deploykit.parity",),
    ("deploykit.runtime",),
    ("deploykit.data",),
    ("deploykit.models", "deploykit.manifest", "deploykit.manifest_fields", "deploykit.profile", "deploykit.catalog"),
    ("deploykit.errors", "deploykit.batch", "deploykit.io", "deploykit.processes", "deploykit.choices", "deploykit.quiet", "deploykit.progress"),
]


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/ARCHITECTURE.md")


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def deploykit_imports() -> dict[str, set[str]]:
    """Every module's deploykit imports, function-level (lazy) ones included."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("deploykit", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deploykit"):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("deploykit")}
        graph[module] = imported
    return graph


def test_imports_only_run_down_the_layers():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in deploykit_imports().items()
        if module != "deploykit"
        for target in targets
        if target != "deploykit" and layer_of(target) < layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles_between_packages():
    edges: dict[str, set[str]] = {}
    for module, targets in deploykit_imports().items():
        if module == "deploykit":
            continue
        for target in targets:
            if target != "deploykit" and package_of(target) != package_of(module):
                edges.setdefault(package_of(module), set()).add(package_of(target))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in edges.get(start, ()))

    cycles = sorted(package for package in edges if reaches(package, package, {package}))
    assert not cycles, f"packages in an import cycle: {cycles}"
