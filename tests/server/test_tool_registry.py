"""The server's tool registry and the domain's tool calls, as units: no database, no model."""

from __future__ import annotations

from typing import cast

from cairn_protocol import CLIENT_TOOLS
from cairn_server.config import FetchSettings
from cairn_server.domain import MalformedArguments, ToolCall
from cairn_server.memory.services import Memory
from cairn_server.tools.base import ToolContext
from cairn_server.tools.registry import SERVER_TOOLS, TOOLS, server_registry


def test_a_tool_call_parses_its_arguments_once_and_keeps_the_models_text() -> None:
    call = ToolCall("c1", "read", '{"path": "a.py"}')
    assert call.parsed == {"path": "a.py"} and call.arguments_json == '{"path": "a.py"}'
    assert ToolCall("c2", "read", "").parsed == {}
    assert ToolCall("c2", "read", "").arguments_json == "{}"


def test_malformed_arguments_are_named_for_the_model() -> None:
    broken = ToolCall("c1", "read", '{"path": ')
    assert isinstance(broken.parsed, MalformedArguments)
    assert broken.parsed.problem.startswith("your arguments for read are not valid JSON")
    assert broken.arguments_object == {} and broken.arguments_json == "{}"
    listed = ToolCall("c2", "grep", "[1, 2]")
    assert listed.parsed == MalformedArguments("arguments for grep must be a JSON object")


def test_a_run_is_offered_the_client_tools_its_client_offers_then_every_server_tool() -> None:
    names = [spec.name for spec in TOOLS.specs(["grep", "read", "teleport"])]
    assert names == ["read", "grep", *SERVER_TOOLS]
    assert len(TOOLS.specs(CLIENT_TOOLS)) == len(CLIENT_TOOLS) + len(SERVER_TOOLS)
    for spec in TOOLS.specs(CLIENT_TOOLS):
        assert "title" not in spec.parameters
        assert all("title" not in p for p in spec.parameters.get("properties", {}).values())


def test_an_operator_can_turn_fetch_url_off() -> None:
    assert server_registry(FetchSettings()).runner("fetch_url") == "server"
    off = server_registry(FetchSettings.from_env({"CAIRN_FETCH_ENABLED": "0"}))
    names = [spec.name for spec in off.specs(["read"])]
    assert "fetch_url" not in names and "conversation_search" in names
    assert off.runner("fetch_url") is None and off.kind("fetch_url") is None


def test_the_registry_says_who_runs_a_tool() -> None:
    assert TOOLS.runner("memory_insert") == "server"
    assert TOOLS.runner("shell") == "client"
    assert TOOLS.runner("teleport") is None


def test_the_registry_says_what_a_tool_does_in_the_protocol_s_kinds() -> None:
    assert TOOLS.kind("read") == "read" and TOOLS.kind("apply_patch") == "edit"
    assert TOOLS.kind("shell") == "shell"
    assert TOOLS.kind("conversation_search") == "read" and TOOLS.kind("archival_search") == "read"
    assert TOOLS.kind("memory_rethink") == "edit" and TOOLS.kind("archival_insert") == "edit"
    assert TOOLS.kind("fetch_url") == "read"
    assert TOOLS.kind("teleport") is None


async def test_dispatch_turns_bad_calls_into_errors_for_the_model() -> None:
    ctx = ToolContext(cast(Memory, None), "agent", "conversation")
    malformed = await TOOLS.dispatch(ctx, ToolCall("c1", "memory_insert", "{"))
    assert malformed.is_error and "not valid JSON" in malformed.content
    invalid = await TOOLS.dispatch(ctx, ToolCall("c2", "memory_insert", '{"label": "x"}'))
    assert invalid.is_error and "invalid arguments for memory_insert: text" in invalid.content
    client = await TOOLS.dispatch(ctx, ToolCall("c3", "read", '{"path": "a"}'))
    assert client.is_error and "not a tool the server runs" in client.content
