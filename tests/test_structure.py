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
    commands = [node for node in tree.body if isinstance(node, ast.FunctionDef)
                and any("command" in ast.unparse(decorator) for decorator in node.decorator_list)]
    assert len(commands) >= 11
    body_lines = {node.name: node.end_lineno - node.body[0].lineno + 1 for node in commands}
    assert not {name: lines for name, lines in body_lines.items() if lines > MAX_COMMAND_LINES}


def test_whether_weights_are_a_tag_is_decided_only_where_references_are_parsed():
    deciders = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if "is_weights_tag" in path.read_text()}
    assert deciders and all(name.startswith("models/") or name == "recipes/ref.py" for name in deciders), deciders
