"""The helpers both sides use to word pydantic for a model, and the client tools' kinds."""

from __future__ import annotations

import pytest
from cairn_protocol import CLIENT_TOOLS
from cairn_protocol.validation import schema_without_titles, setting_problem, validation_problems
from pydantic import BaseModel, Field, ValidationError


class Nested(BaseModel):
    depth: int


class Args(BaseModel):
    name: str = Field(description="A name.")
    inner: Nested


def test_a_validation_error_is_one_line_naming_each_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Args.model_validate({"inner": {"depth": "deep"}})
    assert validation_problems(caught.value) == (
        "name: Field required; inner.depth: Input should be a valid integer, "
        "unable to parse string as an integer"
    )
    assert validation_problems(caught.value, skip=1, whole="(frame)").startswith("(frame): ")


class Knobs(BaseModel):
    retries: int = Field(4, ge=0, le=9, validation_alias="CAIRN_RETRIES")
    url: str = Field("", validation_alias="CAIRN_URL")


@pytest.mark.parametrize(
    ("variables", "line"),
    [
        ({"CAIRN_RETRIES": "many"}, "CAIRN_RETRIES='many' is not an integer from 0 to 9"),
        (
            {"CAIRN_RETRIES": "12"},
            "CAIRN_RETRIES='12' is out of range: expected an integer from 0 to 9",
        ),
        ({"CAIRN_URL": 3}, "CAIRN_URL=3: Input should be a valid string"),
    ],
)
def test_a_bad_setting_is_one_line_naming_its_variable(
    variables: dict[str, object], line: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Knobs.model_validate(variables)
    assert setting_problem(caught.value, Knobs.model_fields) == line


def test_schemas_lose_every_title_and_keep_the_rest() -> None:
    schema = schema_without_titles(Args)
    assert "title" not in str(schema)
    assert schema["properties"]["name"] == {"description": "A name.", "type": "string"}


def test_every_client_tool_has_the_kind_the_policy_groups_it_by() -> None:
    kinds = {name: tool.kind for name, tool in CLIENT_TOOLS.items()}
    assert kinds == {
        "read": "read",
        "grep": "read",
        "glob": "read",
        "edit": "edit",
        "apply_patch": "edit",
        "write": "edit",
        "shell": "shell",
    }
