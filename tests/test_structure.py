"""The shape the code keeps: small modules, thin commands, and what the user named decided in one place."""

import ast
from pathlib import Path

import deploykit

PACKAGE = Path(deploykit.__file__).parent
MAX_MODULE_LINES = 350
MAX_COMMAND_LINES = 30


def test_no_module_is_over_350_lines():
    long = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert not {name: lines for name, lines in long.items() if lines > MAX_MODULE_LINES}


def test_every_command_parses_calls_one_recipe_and_renders():
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    commands = [node for node in tree.body if isinstance(node, ast.FunctionDef) and any("command" in ast.unparse(decorator) for decorator in node.decorator_list)]
    assert len(commands) >= 11
    body_lines = {node.name: node.end_lineno - node.body[0].lineno + 1 for node in commands}
    assert not {name: lines for name, lines in body_lines.items() if lines > MAX_COMMAND_LINES}


def test_whether_weights_are_a_tag_is_decided_only_where_references_are_parsed():
    deciders = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if "is_weights_tag" in path.read_text()}
    assert deciders and all(name.startswith("models/") or name == "recipes/ref.py" for name in deciders), deciders


SERIALISERS = {"as_dict", "gate_record", "get_next"}  # JSON at a file's edge; onnxruntime's reader protocol


def _returns_bare_dict(annotation: ast.expr | None) -> bool:
    """``-> dict``, ``-> dict | None``, ``-> dict[str, object]``: a record passed by key, not ``dict[str, X]``, a mapping of
    like things."""
    if annotation is None:
        return False
    if isinstance(annotation, ast.BinOp):
        return _returns_bare_dict(annotation.left) or _returns_bare_dict(annotation.right)
    text = annotation.value if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str) else None
    if text is not None:
        return any(part.strip() == "dict" for part in text.split("|"))
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name) and annotation.value.id == "dict":
        value = annotation.slice.elts[-1] if isinstance(annotation.slice, ast.Tuple) else annotation.slice
        return isinstance(value, ast.Name) and value.id in ("object", "Any")  # dict[str, object]: a record by another name
    return isinstance(annotation, ast.Name) and annotation.id == "dict"


def test_library_results_cross_layers_as_dataclasses_not_bare_dicts():
    """No public function or method of compress/, bench/, export/ or runtime/ returns a bare dict (a record read by key);
    serialisation methods write JSON at a file's edge and are the exception."""
    offenders = []
    for package in ("compress", "bench", "export", "runtime"):
        for path in (PACKAGE / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and node.name not in SERIALISERS and _returns_bare_dict(node.returns):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not offenders, offenders
