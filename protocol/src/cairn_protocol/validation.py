"""Pydantic's outputs worded for a model: a validation error as one line, a schema without
titles. Owns the two helpers the client's and the server's tools (and frame parsing) share."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


def validation_problems(exc: ValidationError, *, skip: int = 0, whole: str = "(arguments)") -> str:
    """Every problem as `field.path: message`, joined by `; `. `skip` drops leading parts of
    each location (a frame's type tag); a problem with no location left is named `whole`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc'][skip:]) or whole}: {err['msg']}"
        for err in exc.errors()
    )


def schema_without_titles(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema without pydantic's titles (they cost tokens and say nothing)."""
    schema: dict[str, Any] = _strip_titles(model.model_json_schema())
    return schema


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema
