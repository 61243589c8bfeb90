"""The attribute docstrings of the config models: their fields' descriptions.

pydantic's ``use_attribute_docstrings`` would read them while each model class
is built, by fetching and tokenizing the module's source once per class: ~70 ms
of every ``ipvsd run`` (a third of building the models), for text that only
the JSON Schema and the reference (`ipvsd.config.schema`) show. So they are
read here, once, from the module's syntax tree, when a schema is made.

Same rule as pydantic: a string literal right after an annotated field
(``name: type = default``) describes that field; it is cleaned like a
docstring (`inspect.cleandoc`).
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
