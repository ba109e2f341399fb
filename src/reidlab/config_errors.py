"""Readable configuration errors: one line per pydantic error, naming the dotted key
(``data.train[1]``), the value, what was expected and, for an unknown key, the nearest
valid one (``unknown key 'solver.lrr'; did you mean 'solver.lr'?``)."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel

from reidlab.registry import nearest

_TYPE_MESSAGES = {
    "int_type": "expected an integer", "int_from_float": "expected an integer",
    "int_parsing": "expected an integer", "bool_type": "expected true or false",
    "string_type": "expected a string", "float_type": "expected a number",
    "float_parsing": "expected a number", "list_type": "expected a list",
    "dict_type": "expected a mapping", "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _section_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The config section at a location path (``("data", "synthetic")``), if it is one."""
    cls: Any = root
    for part in loc:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type)
                                 and issubclass(field.annotation, BaseModel)):
            return None
        cls = field.annotation
    return cls


def _tuple_len(root: type[BaseModel], loc: tuple) -> int | str:
    """How many values the tuple field at ``loc`` holds."""
    section = _section_at(root, loc[:-1])
    field = section.model_fields.get(str(loc[-1])) if section else None
    return len(get_args(field.annotation)) if field is not None else "several"


def message(root: type[BaseModel], error: Any) -> str:
    """One readable line for one pydantic error, naming the dotted key."""
    loc = tuple(error["loc"])
    names = [p for p in loc if isinstance(p, str)]
    key = ""
    for part in loc:  # list items are part of their key: data.train[1]
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        section = _section_at(root, loc[:-1])
        hint = nearest(str(loc[-1]), list(section.model_fields)) if section else None
        prefix = ".".join(names[:-1])
        full = f"{prefix}.{hint}" if prefix and hint else hint
        return f"unknown key {key!r}" + (f"; did you mean {full!r}?" if hint else "")
    if kind == "literal_error":
        return f"{key}: {value!r} is not one of {error['ctx']['expected'].replace(' or ', ', ')}"
    if kind == "missing" and isinstance(loc[-1], int):  # a tuple given too few values
        key = key.rsplit("[", 1)[0]
        return f"{key}: expected a list of {_tuple_len(root, loc[:-1])} values, got {value!r}"
    if kind in ("too_long", "tuple_type"):
        return f"{key}: expected a list of {_tuple_len(root, loc)} values, got {value!r}"
    if kind == "value_error" and str(error["msg"]).startswith("Value error, not a number"):
        return f"{key}: expected a number, got {value!r}"
    if kind == "value_error":  # our own validators name their keys
        return str(error["msg"]).removeprefix("Value error, ")
    if kind in _TYPE_MESSAGES:
        return f"{key}: {_TYPE_MESSAGES[kind]}, got {value!r}"
    return f"{key}: {error['msg']}, got {value!r}"
