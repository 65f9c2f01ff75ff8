"""MCP tools end to end: a real MCP server (tests/support/mcp_server.py, the SDK's MCPServer)
started over stdio by a real client session, its tools offered to a real server and the fake
model, calls approved, denied, redacted and capped, and servers that crash, hang or lie."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_client.api import CairnApi
from cairn_client.mcp.config import (
    McpServerConfig,
    McpSetup,
    load_mcp_setup,
    read_servers,
    trust,
)
from cairn_client.mcp.servers import McpServers
from cairn_client.policy.settings import PolicySettings, SettingsError
from cairn_client.policy.types import Approval
from cairn_client.tools.base import McpCall, PreparedCall, Preview
from cairn_client.workspace import detect_workspace
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import ToolRequest, Welcome
from cairn_protocol.mcp import mcp_tool_name, schema_problem
from cairn_protocol.rest import ContextReport, McpServerPublic
from cairn_server.domain import ToolSpec
from cairn_server.tools.tool_search import arrange_tools, find_tools
from support.listener import RecordingListener
from support.mcp_http import http_mcp_server as serving_http
from support.servers import TEST_TOKEN, Served, cairn_server, call, script, sqlite_url
from support.sessions import client_session, one_request, welcomed
from support.settings import environment, policy_for

MCP_SERVER = Path(__file__).parents[1] / "support" / "mcp_server.py"


def stdio_server(name: str = "t", *flags: str, timeout_s: float = 60.0) -> McpServerConfig:
    return McpServerConfig(
        name, sys.executable, (str(MCP_SERVER), *flags), timeout_s=timeout_s, start_timeout_s=60
    )


def tool_answers(served: Served) -> list[str]:
    """What the model was told of each tool call in the last request."""
    messages = served.fake.requests[-1].body["messages"]
    return [str(m["content"]) for m in messages if m.get("role") == "tool"]


def offered_tools(served: Served) -> dict[str, Any]:
    """The tools of the last request (the module's fake is shared: earlier ones are others')."""
    tools = served.fake.requests[-1].body["tools"]
    return {tool["function"]["name"]: tool["function"] for tool in tools}


def run_with_mcp(
    served: Served,
    repo: Path,
    servers: list[McpServerConfig],
    *,
    rules: PolicySettings | None = None,
    answers: list[Approval] | None = None,
) -> RecordingListener:
    listener = RecordingListener(answers)
    policy = policy_for(rules or PolicySettings())

    async def work() -> None:
        session = client_session(served.url, repo, listener, policy)
        session.mcp = McpServers(McpSetup(tuple(servers)), repo, repo.parent / "mcp-logs")
        await one_request(session, listener, "use the MCP tools")

    asyncio.run(work())
    return listener


def test_mcp_tools_are_offered_and_an_approved_call_runs(served: Served, own_repo: Path) -> None:
    served.fake.set_script(
        script({"tool_calls": [call("mcp__t__echo", text="hello")]}, {"text": "Done."})
    )

    listener = run_with_mcp(served, own_repo, [stdio_server()], answers=[Approval("once")])

    tools = offered_tools(served)
    assert tools["mcp__t__echo"]["parameters"]["properties"]["text"]["type"] == "string"
    assert "Echo the text back" in tools["mcp__t__echo"]["description"]
    assert {"read", "shell", "mcp__t__add"} <= set(tools)
    [asked] = listener.asked  # MCP tools ask by default
    assert asked.preview.title == "MCP t: echo" and '"hello"' in asked.preview.body
    assert tool_answers(served) == ["echo: hello"]


def test_a_rule_denies_an_mcp_tool_and_the_model_is_told(served: Served, own_repo: Path) -> None:
    served.fake.set_script(
        script(
            {"tool_calls": [call("mcp__t__add", a=1, b=2), call("mcp__t__echo", text="x")]},
            {"text": "Understood."},
        )
    )
    rules = PolicySettings(deny=["mcp(t:echo)"], allow=["mcp(t:*)"])

    listener = run_with_mcp(served, own_repo, [stdio_server()], rules=rules)

    assert listener.asked == []
    added, echoed = tool_answers(served)
    assert added == "3"
    assert "denied by rule mcp(t:echo)" in echoed


def test_mcp_results_are_redacted_capped_and_checked(served: Served, own_repo: Path) -> None:
    served.fake.set_script(
        script(
            {
                "tool_calls": [
                    call("mcp__t__leak"),
                    call("mcp__t__flood"),
                    call("mcp__t__add", a="one", b=2),
                ]
            },
            {"text": "Done."},
        )
    )

    run_with_mcp(served, own_repo, [stdio_server()], rules=PolicySettings(allow=["mcp(t:*)"]))

    leaked, flooded, bad_arguments = tool_answers(served)
    assert "AKIA" not in leaked and "[REDACTED:" in leaked
    assert len(flooded) < 40_000 and "characters cut" in flooded
    assert "invalid arguments for mcp__t__add at a" in bad_arguments


def test_misbehaving_servers_give_clear_errors_and_never_stall_the_run(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(
        script(
            {
                "tool_calls": [
                    call("mcp__t__lie"),
                    call("mcp__t__garbage"),
                    call("mcp__t__hang"),
                    call("mcp__t__crash"),
                    call("mcp__t__echo", text="after the crash"),
                ]
            },
            {"text": "Done."},
        )
    )

    listener = run_with_mcp(
        served, own_repo, [stdio_server(timeout_s=3)], rules=PolicySettings(allow=["mcp(t:*)"])
    )

    lie, garbage, hang, crash, after = tool_answers(served)
    assert "does not fit the MCP schema" in lie
    assert "'this is not JSON-RPC at all', which is not JSON-RPC" in garbage
    assert "no answer within 3 s" in hang
    assert "closed the connection" in crash and "closed the connection" in after
    assert listener.of_type("run_finished")


def test_a_server_that_fails_to_start_is_one_line_and_the_rest_works(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(
        script({"tool_calls": [call("mcp__good__add", a=2, b=3)]}, {"text": "Done."})
    )
    servers = [stdio_server("broken", "--fail-start"), stdio_server("good")]

    listener = run_with_mcp(
        served, own_repo, servers, rules=PolicySettings(allow=["mcp(good:add)"])
    )

    [note] = listener.notices
    assert note.startswith("MCP: server broken is not available:") and "\n" not in note
    assert not any(name.startswith("mcp__broken__") for name in offered_tools(served))
    assert tool_answers(served) == ["5"]


def test_mcp_names_cannot_collide_with_built_ins_and_fit_providers() -> None:
    assert mcp_tool_name("github", "create_issue") == "mcp__github__create_issue"
    odd = mcp_tool_name("files", "read.file/with spaces" + "x" * 80)
    assert len(odd) <= 64 and odd.startswith("mcp__files__read_file_with_spaces")
    assert odd != mcp_tool_name("files", "read.file/with spaces" + "x" * 81)


# --------------------------------------------------------------------------- configuration

REPO_SERVERS = """
[mcp.servers.tracker]
command = "tracker-mcp"
args = ["--stdio"]
env = { TRACKER_URL = "https://tracker.example" }
"""


def test_a_repository_server_starts_only_once_trusted_and_again_asks_when_changed(
    tmp_path: Path,
) -> None:
    root, data, user_file = tmp_path / "repo", tmp_path / "data", tmp_path / "user.toml"
    (root / ".cairn").mkdir(parents=True)
    (root / ".cairn" / "settings.toml").write_text(REPO_SERVERS)
    user_file.write_text('[mcp.servers.mine]\ncommand = "my-mcp"\n')

    before = load_mcp_setup(root, data, user_file)
    assert [s.name for s in before.servers] == ["mine"]
    assert [s.name for s in before.untrusted] == ["tracker"]
    assert "cairn mcp trust" in (before.untrusted_note() or "")

    assert before.repo_hash is not None
    trust(data, before.repo_hash, root)
    trusted = load_mcp_setup(root, data, user_file)
    assert [s.name for s in trusted.servers] == ["mine", "tracker"] and not trusted.untrusted

    (root / ".cairn" / "settings.toml").write_text(REPO_SERVERS.replace("--stdio", "--evil"))
    changed = load_mcp_setup(root, data, user_file)
    assert [s.name for s in changed.untrusted] == ["tracker"]


def test_a_malformed_server_table_is_one_line_naming_it(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('[mcp.servers.bad__name]\ncommand = "x"\n')
    with pytest.raises(SettingsError, match=r"\[mcp.servers.bad__name\]: a server's name"):
        read_servers(settings, "settings.toml")
    settings.write_text("[mcp.servers.x]\nargs = []\n")
    with pytest.raises(SettingsError, match="needs command"):
        read_servers(settings, "settings.toml")


# --------------------------------------------------------------------------- policy


def mcp_call(server: str, tool: str) -> PreparedCall:
    request = ToolRequest(run_id="r", call_id="c", tool=mcp_tool_name(server, tool), arguments={})
    preview = Preview(f"MCP {server}: {tool}", "command", "{}")
    return PreparedCall(request, None, preview, mcp=McpCall(server, tool, {}))


def test_mcp_rules_match_server_and_tool_and_the_default_asks(tmp_path: Path) -> None:
    settings = PolicySettings(
        allow=["mcp(github:get_*)"],
        deny=["mcp(github:delete_repo)"],
        user_file=tmp_path / "settings.toml",
    )
    policy = policy_for(settings)
    assert policy.decide(mcp_call("github", "get_issue")).decision == "allow"
    assert policy.decide(mcp_call("github", "delete_repo")).decision == "deny"
    asked = policy.decide(mcp_call("github", "create_issue"))
    assert asked.decision == "ask" and asked.options.rule == "mcp(github:create_issue)"
    assert asked.options.session == "this MCP tool"
    assert policy.allow_always(mcp_call("github", "create_issue")) == "mcp(github:create_issue)"
    assert policy.decide(mcp_call("github", "create_issue")).decision == "allow"
    policy.set_mode("plan")
    assert policy.decide(mcp_call("github", "close_issue")).decision == "deny"


def test_allow_for_session_covers_that_mcp_tool_only() -> None:
    policy = policy_for(PolicySettings())
    policy.allow_for_session(mcp_call("github", "create_issue"))
    assert policy.decide(mcp_call("github", "create_issue")).decision == "allow"
    assert policy.decide(mcp_call("github", "close_issue")).decision == "ask"


# --------------------------------------------------------------------------- deferral


def test_many_mcp_tools_are_deferred_behind_tool_search_and_context_shows_each_server(
    tmp_path: Path, own_repo: Path
) -> None:
    listener = RecordingListener()
    turns = script(
        {"tool_calls": [call("tool_search", query="record family 7")]},
        {"tool_calls": [call("mcp__many__lookup_record_7", key="k1")]},
        {"text": "Done."},
    )

    async def work(url: str) -> tuple[ContextReport, ContextReport]:
        async with CairnApi(url, TEST_TOKEN) as api:
            session = client_session(
                url, own_repo, listener, policy_for(PolicySettings(allow=["mcp(many:*)"]))
            )
            servers = [stdio_server("many", "--tools", "50"), stdio_server("few")]
            session.mcp = McpServers(McpSetup(tuple(servers)), own_repo, tmp_path / "logs")
            async with welcomed(session, listener):
                welcome = listener.of_type("welcome")[0]
                assert isinstance(welcome, Welcome)
                before = await api.context(welcome.conversation_id)
                await session.send_user_message("look up record 7")
                await listener.wait_for(lambda: bool(listener.of_type("run_finished")), 60)
                return before, await api.context(welcome.conversation_id)

    with (
        FakeModelServer() as fake,
        cairn_server(sqlite_url(tmp_path), fake, env={"CAIRN_MCP_TOOL_SHARE": "0.02"}) as server,
    ):
        fake.set_script(turns)
        before, _ = asyncio.run(work(server.url))
        first, last = fake.requests[0].body, fake.requests[-1].body

    sent_first = {tool["function"]["name"]: tool["function"] for tool in first["tools"]}
    assert not any(name.startswith("mcp__") for name in sent_first)
    assert "mcp__many__lookup_record_7" in sent_first["tool_search"]["description"]
    loaded = [m["content"] for m in last["messages"] if m.get("role") == "tool"]
    assert '"name": "mcp__many__lookup_record_7"' in loaded[0]
    assert loaded[1] == "record 7/k1: status ok (history=False, limit=10)"
    assert "mcp__many__lookup_record_7" in {tool["function"]["name"] for tool in last["tools"]}
    tools = next(section for section in before.sections if section.name == "tools")
    items = {item.name: item.tokens for item in tools.items}
    assert items["mcp many (58 tools, deferred behind tool_search)"] == 0
    assert items["mcp few (8 tools, deferred behind tool_search)"] == 0
    assert 0 < items["tool_search"] < 2_000


def test_tool_search_ranks_by_name_and_description_and_selects_exact_names() -> None:
    specs = [
        ToolSpec("mcp__gh__create_issue", "Create an issue in a repository.", {}),
        ToolSpec("mcp__gh__list_pulls", "List pull requests.", {}),
        ToolSpec("mcp__db__query", "Run a read-only SQL query; issues none.", {}),
    ]
    assert [s.name for s in find_tools(specs, "create issue", 5)][0] == "mcp__gh__create_issue"
    picked = find_tools(specs, "select:mcp__db__query,mcp__gh__list_pulls", 5)
    assert [s.name for s in picked] == ["mcp__db__query", "mcp__gh__list_pulls"]
    assert find_tools(specs, "weather", 5) == []
    few = arrange_tools(specs, lambda spec: 100, 1_000)
    assert few.deferred == () and len(few.offered) == 3
    many = arrange_tools(specs, lambda spec: 400, 1_000)
    assert [s.name for s in many.offered] == ["tool_search"] and len(many.deferred) == 3


# --------------------------------------------------------------------------- HTTP, server side


@pytest.fixture
def http_mcp_server() -> Iterator[str]:
    """The test MCP server over streamable HTTP on loopback; its endpoint URL."""
    with serving_http() as url:
        yield url


def test_an_agents_http_mcp_server_is_called_by_the_server_through_its_registry(
    served: Served, own_repo: Path, http_mcp_server: str
) -> None:
    served.fake.set_script(
        script(
            {
                "tool_calls": [
                    call("mcp__remote__add", a=20, b=22),
                    call("mcp__remote__leak"),
                    call("mcp__remote__hang"),
                    call("mcp__remote__add", a="x"),
                ]
            },
            {"text": "Done."},
        )
    )
    listener = RecordingListener()

    async def work() -> tuple[int, list[McpServerPublic], int]:
        async with CairnApi(served.url, TEST_TOKEN) as api:
            agent = await api.ensure_agent(
                detect_workspace(own_repo, environ=environment()).identity
            )
            base = f"{served.url}/v1/agents/{agent.id}/mcp-servers"
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TEST_TOKEN}"}) as http:
                bad = await http.put(f"{base}/bad__name", json={"url": http_mcp_server})
                put = await http.put(
                    f"{base}/remote",
                    json={"url": http_mcp_server, "timeout_s": 3, "headers": {"X-Key": "k"}},
                )
                assert put.status_code == 200, put.text
                session = client_session(served.url, own_repo, listener)
                await one_request(session, listener, "use the remote tools")
                listed = [McpServerPublic.model_validate(s) for s in (await http.get(base)).json()]
                gone = await http.delete(f"{base}/remote")
            return bad.status_code, listed, gone.status_code

    bad, [remote], deleted = asyncio.run(work())

    assert bad == 422 and deleted == 204
    assert remote.header_names == ["X-Key"] and remote.problem is None
    assert "mcp__remote__echo" in remote.tools
    assert "mcp__remote__add" in offered_tools(served)
    added, leaked, hung, invalid = tool_answers(served)
    assert added == "42"
    assert "AKIA" not in leaked and "[REDACTED:" in leaked
    assert "no answer within 3 s" in hung
    assert "invalid arguments for mcp__remote__add" in invalid
    assert listener.asked == []  # the agent's own servers run on the server, unasked


def test_a_tool_whose_schema_providers_would_refuse_is_never_offered() -> None:
    assert schema_problem({"type": "object", "properties": {"a": {"type": "string"}}}) is None
    assert "not a JSON Schema" in (schema_problem({"type": "array"}) or "")
    assert "invalid" in (schema_problem({"type": "object", "properties": 5}) or "")
    huge = {"type": "object", "description": "x" * 30_000}
    assert "over 20,000 characters" in (schema_problem(huge) or "")
