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
    ``max_errors``), never values. Unknown families have no schema: ``[]``."""

    def __init__(self, max_errors: int = 20):
        from jsonschema import Draft202012Validator

        self._validators = {
            fam: Draft202012Validator(load_schema(fam)) for fam in ("message", "call", "account")
        }
        self.max_errors = max_errors

    def __call__(self, family: str, record: dict) -> list[dict]:
        validator = self._validators.get(family)
        if validator is None:
            return []
        from pipeline.pointers import join, mask_pointer

        out = []
        for err in validator.iter_errors(record):
            ptr = mask_pointer(join([str(p) for p in err.absolute_path]))
            out.append({"pointer": ptr, "problem": _problem(err)})
            if len(out) >= self.max_errors:
                break
        return out


def _problem(err) -> str:
    v = err.validator
    if v == "type":
        expected = err.validator_value
        return f"type: expected {expected if isinstance(expected, str) else ' or '.join(expected)}"
    if v in ("pattern", "format", "enum", "minLength", "maxLength", "minimum", "maximum"):
        return f"{v}: value does not match"
    return f"{v}: schema mismatch"
