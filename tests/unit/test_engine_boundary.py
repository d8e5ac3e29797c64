"""Engine modules use only the public engine contract of the core, never its private names."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import floe_compute
from floe_compute.plugin import ComputePlugin

ENGINES = Path(floe_compute.__file__).parent / "engines"


def core_private_names() -> set[str]:
    """Private attributes and methods of the facade and the contract it inherits."""
    names = {
        n for cls in ComputePlugin.__mro__ for n in vars(cls) if n.startswith("_") and not n.endswith("__")
    }
    for cls in ComputePlugin.__mro__:
        init = vars(cls).get("__init__")
        if init is None or not inspect.isfunction(init):
            continue
        for node in ast.walk(ast.parse(_dedent(init))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and node.attr.startswith("_")
            ):
                names.add(node.attr)
    return names


def _dedent(function: object) -> str:
    import textwrap

    return textwrap.dedent(inspect.getsource(function))  # type: ignore[arg-type]


def _is_plugin_class(node: ast.AST) -> bool:
    """A class that subclasses ComputePlugin (``self`` there is a plugin)."""
    if not isinstance(node, ast.ClassDef):
        return False
    names = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
    return "ComputePlugin" in names


def private_uses(source: str, core_names: set[str]) -> list[str]:
    """``self._x`` for a private name of the core, and private names imported from the core."""
    found = []
    tree = ast.parse(source)
    for plugin_class in filter(_is_plugin_class, ast.walk(tree)):
        for node in ast.walk(plugin_class):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in core_names
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                found.append(f"line {node.lineno}: self.{node.attr}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("floe_compute"):
            internal = not (node.module or "").startswith("floe_compute.engines")
            for alias in node.names:
                if internal and alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    return found


def test_engine_modules_use_no_private_name_of_the_core() -> None:
    core_names = core_private_names()
    assert {"_config", "_lifecycle"} <= core_names  # the check below is not vacuous
    offences = {
        path.name: uses
        for path in sorted(ENGINES.glob("*.py"))
        if (uses := private_uses(path.read_text(), core_names))
    }
    assert offences == {}


def test_the_check_finds_a_private_use() -> None:
    source = (
        "from floe_compute.plugin import _Stopped\n"
        "class X(ComputePlugin):\n"
        "    def f(self):\n"
        "        return self._config\n"
    )
    assert sorted(private_uses(source, {"_config"})) == [
        "line 1: from floe_compute.plugin import _Stopped",
        "line 4: self._config",
    ]
