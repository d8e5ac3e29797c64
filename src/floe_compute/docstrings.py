"""Config fields' docstrings, read from the source: the descriptions in the reference and the JSON
Schema, without pydantic parsing every model's source at import."""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import textwrap

from pydantic import BaseModel

__all__ = ["field_docstrings"]


def field_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """Each field's docstring (the string literal after it), also for inherited fields.

    They are the fields' descriptions in the reference and the JSON Schema. Read from the source
    on demand: pydantic's ``use_attribute_docstrings`` would parse it for every model at import.
    """
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if cls is not BaseModel and issubclass(cls, BaseModel):
            docs.update(_own_docstrings(cls))
    return docs


@functools.cache
def _own_docstrings(cls: type) -> dict[str, str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):  # no source (a frozen or interactive class)
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for statement, after in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(after.value.value)
    return docs
