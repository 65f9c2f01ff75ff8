"""Workspace identity keys, origin normalisation, and tool argument validation."""

from __future__ import annotations

import pytest
from cairn_protocol import CLIENT_TOOLS, ToolArgumentsError, WorkspaceIdentity, normalise_origin
from cairn_protocol.tools import validate_tool_arguments


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:Acme/App.git",
        "https://github.com/Acme/App",
        "https://github.com/Acme/App.git/",
        "ssh://git@GitHub.com/Acme/App.git",
        "https://user:secret@github.com:443/Acme/App.git",
    ],
)
def test_spellings_of_one_remote_normalise_alike(url: str) -> None:
    assert normalise_origin(url) == "github.com/Acme/App"


def test_identity_key_prefers_the_root_commit() -> None:
    a = WorkspaceIdentity(root_commit="abc", origin="x/y", display_name="a", path="/one")
    b = WorkspaceIdentity(root_commit="abc", origin=None, display_name="b", path="/two")
    c = WorkspaceIdentity(root_commit="def", origin="x/y", display_name="a", path="/one")
    assert a.key == b.key != c.key


def test_the_seven_client_tools_exist() -> None:
    assert set(CLIENT_TOOLS) == {"read", "grep", "glob", "edit", "apply_patch", "write", "shell"}
    for tool in CLIENT_TOOLS.values():
        schema = tool.parameters_schema()
        assert schema["type"] == "object" and "title" not in schema


def test_bad_arguments_are_explained() -> None:
    with pytest.raises(ToolArgumentsError, match="unknown tool 'rm'"):
        validate_tool_arguments("rm", {})
    with pytest.raises(ToolArgumentsError, match="path"):
        validate_tool_arguments("read", {"offset": 2})
    with pytest.raises(ToolArgumentsError, match="offset"):
        validate_tool_arguments("read", {"path": "a", "offset": 0})
    assert validate_tool_arguments("edit", {"path": "a", "old_string": "x", "new_string": "y"})
