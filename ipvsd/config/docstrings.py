"""The attribute docstrings of the config models: their fields' descriptions.

Only the JSON Schema and the reference (`ipvsd.config.schema`,
`ipvsd.config.reference`) show them, so they are read when a schema is made,
once, from the module's syntax tree, not while the model classes are built
(which would cost every ``ipvsd run`` the parse of the module's source).

The rule (pydantic's, which ipvsd used before `ipvsd.config.strict`): a string
literal right after an annotated field (``name: type = default``) describes
that field; it is cleaned like a docstring (`inspect.cleandoc`).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping
from functools import cache
from types import ModuleType


@cache
def attribute_docstrings(module: ModuleType) -> Mapping[str, Mapping[str, str]]:
    """Class name → field name → the field's docstring, for every class of `module`."""
    tree = ast.parse(inspect.getsource(module))
    found: dict[str, dict[str, str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        docs = found.setdefault(node.name, {})
        for statement, after in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[statement.target.id] = inspect.cleandoc(after.value.value)
    return found
