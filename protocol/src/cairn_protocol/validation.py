"""Pydantic's outputs worded for people and models: a validation error as one line, a schema
without titles; shared by the client's and the server's tools, frames and settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from annotated_types import Ge, Le
from pydantic import AliasChoices, BaseModel, ValidationError
from pydantic.fields import FieldInfo


def validation_problems(exc: ValidationError, *, skip: int = 0, whole: str = "(arguments)") -> str:
    """Every problem as `field.path: message`, joined by `; `. `skip` drops leading parts of
    each location (a frame's type tag); a problem with no location left is named `whole`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc'][skip:]) or whole}: {err['msg']}"
        for err in exc.errors()
    )


def setting_problem(exc: ValidationError, fields: Mapping[str, FieldInfo]) -> str:
    """The first problem of a settings model built from environment variables, as one line
    naming the variable: `NAME='value': message`, or for a number of the `fields`
    `NAME='value' is not an integer from 1 up` / `… is out of range: expected …`."""
    error = exc.errors()[0]
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    shown = f"{name}={error.get('input')!r}"
    info = next((f for key, f in fields.items() if name in variable_names(f) or name == key), None)
    if info is None or info.annotation not in (int, float):
        return f"{shown}: {str(error['msg']).removeprefix('Value error, ')}"
    expected = _expected_number(info)
    if error["type"] in ("int_parsing", "float_parsing", "finite_number", "int_from_float"):
        return f"{shown} is not {expected}"
    return f"{shown} is out of range: expected {expected}"


def variable_names(info: FieldInfo) -> set[str]:
    """The names a field is read by (its validation aliases)."""
    alias = info.validation_alias
    if isinstance(alias, str):
        return {alias}
    if isinstance(alias, AliasChoices):
        return {choice for choice in alias.choices if isinstance(choice, str)}
    return set()


def _expected_number(info: FieldInfo) -> str:
    low = next(m.ge for m in info.metadata if isinstance(m, Ge))
    high = next((m.le for m in info.metadata if isinstance(m, Le)), None)
    kind = "an integer" if info.annotation is int else "a number"
    return f"{kind} from {low}" + (f" to {high}" if high is not None else " up")


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
