"""MCP servers through the real `cairn -p`: a server in the user's settings starts and its
tool runs under an allow rule; a repository's server waits, with one line saying how to
trust it, until `cairn mcp trust`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cairn_fakes.runner import FakeModelServer
from support.cli import cairn
from support.servers import call, model_env, script

MCP_SERVER = Path(__file__).parents[1] / "support" / "mcp_server.py"


def server_table(name: str) -> str:
    return (
        f"[mcp.servers.{name}]\n"
        f"command = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(MCP_SERVER))}]\n"
        "start_timeout_s = 120\n"
    )


def offered(fake_model: FakeModelServer) -> set[str]:
    return {tool["function"]["name"] for tool in fake_model.requests[-1].body["tools"]}


def test_cairn_p_runs_an_mcp_tool_and_trusts_a_repository_server_only_when_told(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    config = tmp_path / "config"
    (config / "cairn").mkdir(parents=True)
    (config / "cairn" / "settings.toml").write_text(
        '[permissions]\nallow = ["mcp(mine:add)"]\n\n' + server_table("mine")
    )
    (repo / ".cairn").mkdir()
    (repo / ".cairn" / "settings.toml").write_text(server_table("theirs"))
    env = {"XDG_CONFIG_HOME": str(config), **model_env(fake_model)}
    fake_model.set_script(
        script({"tool_calls": [call("mcp__mine__add", a=2, b=40)]}, {"text": "It is 42."})
    )

    first = cairn(repo, tmp_path / "data", "-p", "add 2 and 40", env=env)

    assert first.returncode == 0, first.stderr
    assert "It is 42." in first.stdout and "✓ MCP mine: add" in first.stderr
    messages = fake_model.requests[-1].body["messages"]
    assert [m["content"] for m in messages if m.get("role") == "tool"] == ["42"]
    [untrusted] = [line for line in first.stderr.splitlines() if line.startswith("cairn: MCP")]
    assert "(theirs)" in untrusted and "cairn mcp trust" in untrusted
    assert "mcp__mine__add" in offered(fake_model)
    assert not any(name.startswith("mcp__theirs__") for name in offered(fake_model))

    trusted = cairn(repo, tmp_path / "data", "mcp", "trust", "--yes", env=env)
    assert trusted.returncode == 0 and "trusted 1 MCP server" in trusted.stdout
    fake_model.set_script(script({"text": "Both are here."}))

    second = cairn(repo, tmp_path / "data", "-p", "which tools?", env=env)

    assert second.returncode == 0, second.stderr
    assert "cairn: MCP" not in second.stderr
    assert {"mcp__mine__add", "mcp__theirs__add"} <= offered(fake_model)
