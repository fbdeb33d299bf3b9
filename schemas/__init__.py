"""JSON Schemas of every input event family and output record, and a small loader.

The files ship in the wheel (``schemas/*.json``). :class:`SchemaChecker` validates a
decoded record against its family's schema and lists mismatches without quoting values.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

SCHEMA_FILES = {
    "message": "message.schema.json",
    "call": "call.schema.json",
    "account": "account.schema.json",
    "envelope": "envelope.schema.json",
    "deadletter": "deadletter.schema.json",
}


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """The JSON Schema named ``name`` (a key of :data:`SCHEMA_FILES`). Raises ``KeyError``."""
    text = resources.files("schemas").joinpath(SCHEMA_FILES[name]).read_text(encoding="utf-8")
    return json.loads(text)


class SchemaChecker:
    """Validates records of a family; ``__call__(family, record) -> list[dict]`` returns
    ``[{"pointer": "/duration", "problem": "type: expected integer"}, ...]`` (at most
    ``max_errors``), never values. Unknown families have no schema: ``[]``.

    The family schemas use a small subset of JSON Schema at the top level (``type``,
    ``pattern``, ``enum`` per property): those checks are compiled to plain Python for the
    hot path; any other keyword is delegated to jsonschema for that property.
    """

    def __init__(self, max_errors: int = 20):
        self._checks = {fam: _compile(load_schema(fam)) for fam in ("message", "call", "account")}
        self.max_errors = max_errors

    def __call__(self, family: str, record: dict) -> list[dict]:
        checks = self._checks.get(family)
        if checks is None:
            return []
        out: list[dict] = []
        for key, value in record.items():
            check = checks.get(key)
            if check is None:
                continue
            if check.__class__ is _Simple:  # inlined: the hot path of every record
                if check.checked and (not isinstance(value, check.py_types)
                                      or (value.__class__ is bool and not check.bool_ok)):
                    problem = check.type_problem
                elif check.search is not None and isinstance(value, str) and not check.search(value):
                    problem = "pattern: value does not match"
                elif check.enum is not None and value not in check.enum:
                    problem = "enum: value does not match"
                else:
                    continue
                found = (("/" + key.replace("~", "~0").replace("/", "~1"), problem),)
            else:
                found = check(key, value)
            for ptr, problem in found:
                out.append({"pointer": ptr, "problem": problem})
                if len(out) >= self.max_errors:
                    return out
        return out


    def for_shape(self, family: str, record: dict):
        """A check equal to ``self(family, r)`` for every record ``r`` with ``record``'s
        top-level keys, in its order, and its top-level value types (the classifier keeps
        one per record layout): what depends on keys and types only is decided here, once;
        per record only patterns, enums and delegated checks look at values. Returns
        ``fn(record) -> list[dict]``."""
        checks = self._checks.get(family)
        if checks is None:
            return _no_errors
        program = []
        for key, value in record.items():
            check = checks.get(key)
            if check is None:
                continue
            ptr = "/" + key.replace("~", "~0").replace("/", "~1")
            if check.__class__ is _Simple:
                if check.checked and (not isinstance(value, check.py_types)
                                      or (value.__class__ is bool and not check.bool_ok)):
                    program.append((_STATIC, key, ptr, check.type_problem))
                    continue
                search = check.search if isinstance(value, str) else None
                if search is not None or check.enum is not None:
                    program.append((_VALUE, key, ptr, (search, check.enum)))
            else:
                program.append((_DELEGATED, key, ptr, check))
        return _ShapeCheck(tuple(program), self.max_errors)


def _no_errors(_record: dict) -> list[dict]:
    return []


_STATIC, _VALUE, _DELEGATED = 0, 1, 2


class _ShapeCheck:
    """:meth:`SchemaChecker.for_shape`'s check: ``(mode, key, pointer, arg)`` per checked
    key in record order; ``arg`` is the type problem (static), ``(search, enum)`` (value) or
    the delegated check."""

    __slots__ = ("max_errors", "program")

    def __init__(self, program: tuple, max_errors: int):
        self.program, self.max_errors = program, max_errors

    def __call__(self, record: dict) -> list[dict]:
        out: list[dict] = []
        for mode, key, ptr, arg in self.program:
            if mode == _STATIC:
                out.append({"pointer": ptr, "problem": arg})
            elif mode == _VALUE:
                value = record[key]
                search, enum = arg
                if search is not None and not search(value):
                    problem = "pattern: value does not match"
                elif enum is not None and value not in enum:
                    problem = "enum: value does not match"
                else:
                    continue
                out.append({"pointer": ptr, "problem": problem})
            else:
                for eptr, problem in arg(key, record[key]):
                    out.append({"pointer": eptr, "problem": problem})
                    if len(out) >= self.max_errors:
                        return out
                continue
            if len(out) >= self.max_errors:
                return out
        return out


_SIMPLE = {"type", "pattern", "enum", "description", "title"}


def _compile(schema: dict) -> dict:
    """``{property: check(key, value) -> list[(pointer, problem)]}`` for a top-level schema."""
    import re

    from jsonschema import Draft202012Validator

    from pipeline.pointers import join, mask_pointer

    checks = {}
    for name, sub in schema.get("properties", {}).items():
        if set(sub) <= _SIMPLE:
            types = sub.get("type")
            types = [types] if isinstance(types, str) else (types or [])
            type_fns = None
            pattern = re.compile(sub["pattern"]) if "pattern" in sub else None
            enum = sub.get("enum")
            checks[name] = _Simple(types, pattern, enum, _simple_check(types, type_fns, pattern, enum))
        else:
            checks[name] = _delegated_check(Draft202012Validator(sub), join, mask_pointer)
    return checks


class _Simple:
    """A compiled ``type``/``pattern``/``enum`` check of one top-level property (called like
    the other checks, inlined by :meth:`SchemaChecker.__call__`)."""

    __slots__ = ("_fn", "bool_ok", "checked", "enum", "py_types", "search", "type_problem")

    def __init__(self, types, pattern, enum, fn):
        py_types = tuple({"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
                          "object": (dict,), "array": (list,), "null": (type(None),)}.get(t, ()) for t in types)
        self.py_types = tuple(t for group in py_types for t in group)
        self.bool_ok = "boolean" in types
        self.checked = bool(types)
        self.type_problem = f"type: expected {' or '.join(types)}"
        self.search = pattern.search if pattern is not None else None
        self.enum = enum
        self._fn = fn

    def __call__(self, key, value):
        return self._fn(key, value)


def _simple_check(types, type_fns, pattern, enum):
    expected = " or ".join(types)
    py_types = tuple({"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
                      "object": (dict,), "array": (list,), "null": (type(None),)}.get(t, ()) for t in types)
    py_types = tuple(t for group in py_types for t in group)
    bool_ok = "boolean" in types
    checked = bool(types)

    def check(key, value):
        if checked and (not isinstance(value, py_types) or (isinstance(value, bool) and not bool_ok)):
            return [("/" + key.replace("~", "~0").replace("/", "~1"), f"type: expected {expected}")]
        if pattern is not None and isinstance(value, str) and not pattern.search(value):
            return [("/" + key.replace("~", "~0").replace("/", "~1"), "pattern: value does not match")]
        if enum is not None and value not in enum:
            return [("/" + key.replace("~", "~0").replace("/", "~1"), "enum: value does not match")]
        return ()

    return check


def _delegated_check(validator, join, mask_pointer):
    def check(key, value):
        return [(mask_pointer(join([key, *[str(p) for p in err.absolute_path]])), _problem(err))
                for err in validator.iter_errors(value)]

    return check


def _problem(err) -> str:
    v = err.validator
    if v == "type":
        expected = err.validator_value
        return f"type: expected {expected if isinstance(expected, str) else ' or '.join(expected)}"
    if v in ("pattern", "format", "enum", "minLength", "maxLength", "minimum", "maximum"):
        return f"{v}: value does not match"
    return f"{v}: schema mismatch"
