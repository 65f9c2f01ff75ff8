"""`cairn runs ...` and the approval records behind it: a real session decides on tool calls
against a real server, then the command shows how each was decided and what was shown.

Exit codes as for `cairn memory`: 0 ok, 1 server error or not found, 2 usage error.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path

import pytest
from cairn_client.api import CairnApi
from cairn_client.cli import app
from cairn_client.headless import NEEDS_A_PERSON, HeadlessListener, run_headless
from cairn_client.policy.settings import PolicySettings
from cairn_client.policy.types import Approval, Verdict
from cairn_client.session import approval_record
from cairn_client.tools.base import PreparedCall, Preview
from cairn_protocol import ToolRequest
from cairn_protocol.rest import ApprovalPublic
from support.listener import RecordingListener
from support.servers import TEST_TOKEN, Served, call, script
from support.sessions import client_session, one_request
from support.settings import policy_for
from typer.testing import CliRunner, Result

GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
ECHO_RULE = "shell(echo:*)"


@pytest.fixture
def repo(own_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(own_repo)
    return own_repo


def cairn(served: Served, *args: str) -> Result:
    environment = {
        "CAIRN_SERVER_URL": served.url,
        "CAIRN_TOKEN": TEST_TOKEN,
        "COLUMNS": "250",
        "NO_COLOR": "1",
    }
    return CliRunner().invoke(app, list(args), env=environment)


async def run_once(served: Served, repo: Path, listener: RecordingListener, text: str) -> str:
    """Send one request through a real session and return the id of its finished run."""
    settings = PolicySettings(allow=[ECHO_RULE], sources={ECHO_RULE: "settings.toml"})
    client = client_session(served.url, repo, listener, policy_for(settings))
    return (await one_request(client, listener, text)).run_id


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def rows(result: Result) -> list[str]:
    return [" ".join(line.split()) for line in result.stdout.splitlines() if line.strip()]


def test_show_lists_each_decision_with_what_was_shown(served: Served, repo: Path) -> None:
    served.fake.set_script(
        script(
            {"tool_calls": [call("shell", command="echo hello")]},
            {"tool_calls": [call("write", path="notes.txt", content=f"token: {GITHUB}\n")]},
            {
                "tool_calls": [
                    call("edit", path="src/app.py", old_string="return 1", new_string="return 2")
                ]
            },
            {"text": "Done."},
        )
    )

    async def work() -> tuple[str, RecordingListener]:
        listener = RecordingListener([Approval("once"), Approval("deny", "use the helper instead")])
        return await run_once(served, repo, listener, "tidy up"), listener

    run_id, listener = asyncio.run(work())
    previews = [prepared.preview.body for prepared, _, _ in listener.handled]

    shown = cairn(served, "runs", "show", run_id)
    assert shown.exit_code == 0, shown.output
    lines = rows(shown)
    assert lines[0] == f"{run_id} · finished · end_turn"
    assert lines[1].startswith("openai/gpt-4o-mini · 4 steps · in ")
    assert lines[3].split() == [
        "TIME",
        "TOOL",
        "DECISION",
        "BY",
        "ANSWER",
        "HASH",
        "REASON",
        "OUTCOME",
    ]
    decisions = [line.split(maxsplit=2)[2] for line in lines[4:]]  # after the date and time
    assert decisions == [
        f"shell allow policy {sha256(previews[0])[:19]} allowed by rule {ECHO_RULE} in "
        "settings.toml ran",
        f"write allow user once {sha256(previews[1])[:19]} allowed once by the user ran",
        f"edit deny user deny {sha256(previews[2])[:19]} use the helper instead not run",
    ]

    as_json = cairn(served, "runs", "show", run_id, "--json")
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert payload["run"]["id"] == run_id
    records = payload["approvals"]
    assert [record["content_hash"] for record in records] == [sha256(p) for p in previews]
    assert [record["asked_at"] is None for record in records] == [True, False, False]
    assert records[0]["shown"] == "echo hello"
    assert [r["outcome"] for r in records] == ["ok", "ok", "denied"]
    assert records[0]["outcome_content"] == "exit code: 0\nstdout:\nhello"
    assert "-    return 1" in records[2]["shown"] and "+    return 2" in records[2]["shown"]

    with_previews = cairn(served, "runs", "show", run_id, "--shown")
    assert "[REDACTED:github-token]" in with_previews.stdout
    assert GITHUB not in with_previews.stdout and GITHUB in previews[1]
    assert "Edit src/app.py" in with_previews.stdout
    assert "outcome: ran\nexit code: 0\nstdout:\nhello" in with_previews.stdout

    listed = cairn(served, "runs", "list")
    assert listed.exit_code == 0, listed.output
    assert rows(listed)[0] == "RUN STARTED STATUS STOP REASON STEPS TOKENS COST"
    assert rows(listed)[-1].startswith(run_id) and " finished end_turn 4 " in rows(listed)[-1]


def test_a_call_nobody_could_approve_is_recorded_as_such(served: Served, repo: Path) -> None:
    served.fake.set_script(
        script({"tool_calls": [call("write", path="x.txt", content="x\n")]}, {"text": "Ok."})
    )

    async def work() -> list[ApprovalPublic]:
        listener = HeadlessListener(as_json=False, out=io.StringIO(), err=io.StringIO())
        client = client_session(served.url, repo, listener)
        assert await run_headless(client, listener, "write x") == 0
        async with CairnApi(served.url, TEST_TOKEN) as api:
            return await api.list_approvals(listener.finished.result().run_id)

    [record] = asyncio.run(work())
    assert (record.decision, record.decided_by, record.answer) == ("deny", "nobody", None)
    assert record.reason == NEEDS_A_PERSON and record.asked_at is None


def test_an_unknown_run_is_one_line_and_exit_2(served: Served, repo: Path) -> None:
    missing = cairn(served, "runs", "show", "run_nope")
    assert missing.exit_code == 2  # a wrong argument (README, Exit codes)
    assert missing.output.strip() == "cairn: no run run_nope"


def test_a_long_preview_is_kept_cut_with_a_note_and_hashed_whole() -> None:
    body = "echo " + "x" * 30_000
    request = ToolRequest(run_id="r", call_id="c", tool="shell", arguments={"command": body})
    prepared = PreparedCall(request, None, Preview("Run shell command", "command", body))

    record = approval_record(prepared, Verdict("allow", "bypass mode"), "policy")

    assert len(record.shown) == 20_000
    assert record.shown.endswith("\n[cut: the preview has 30,005 characters]")
    assert record.content_hash == sha256(body)


def test_leaving_the_sandbox_is_asked_and_recorded_even_in_bypass(
    served: Served, repo: Path
) -> None:
    served.fake.set_script(
        script(
            {"tool_calls": [call("shell", command="echo inside")]},
            {"tool_calls": [call("shell", command="echo outside", outside_sandbox=True)]},
            {"text": "Done."},
        )
    )

    async def work() -> tuple[list[ApprovalPublic], RecordingListener]:
        listener = RecordingListener([Approval("session")])
        bypass = policy_for(PolicySettings(mode="bypass"))
        client = client_session(served.url, repo, listener, bypass)
        finished = await one_request(client, listener, "run both")
        async with CairnApi(served.url, TEST_TOKEN) as api:
            return await api.list_approvals(finished.run_id), listener

    (inside, outside), listener = asyncio.run(work())
    assert [prepared.request.arguments["command"] for prepared in listener.asked] == [
        "echo outside"
    ]
    assert (inside.decided_by, outside.decided_by) == ("policy", "user")
    assert inside.shown_title == "Run shell command"
    assert outside.shown_title == "Run shell command OUTSIDE the sandbox"
    # "allow for the session" cannot cover leaving the sandbox: it is allowed once only.
    assert outside.reason == "allowed once (it always asks) by the user"


def test_a_run_stopped_by_a_limit_says_which_and_how_to_go_on(served: Served, repo: Path) -> None:
    served.fake.set_script(script(*[{"tool_calls": [call("read", path="missing.py")]}] * 3))
    run_id = asyncio.run(run_once(served, repo, RecordingListener(), "read missing.py"))
    shown = cairn(served, "runs", "show", run_id)
    assert shown.exit_code == 0, shown.output
    assert f"{run_id} · finished · loop_detected" in shown.output
    assert (
        "Loop detected: the model made the same failing read call 3 times, the run's repeat "
        'limit (CAIRN_REPEAT_LIMIT). Send "continue" in its conversation to pick the work up '
        "where it stopped." in shown.output
    )
