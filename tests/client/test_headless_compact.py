"""Headless mode's /compact, model retries and failed calls, with the real session against a
real server.

The `cairn -p` command itself (embedded server, flags, exit codes) is covered end to end in
tests/e2e/test_headless.py; here the listener and run_headless run in the test's own loop.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from cairn_client.commands import compact_focus
from cairn_client.headless import HeadlessListener, run_headless
from cairn_fakes.script import Script, Turn
from support.servers import Served, call, script
from support.sessions import client_session


@dataclass(frozen=True)
class Printed:
    code: int
    out: str
    err: str


async def headless(served: Served, repo: Path, prompt: str, *, as_json: bool = False) -> Printed:
    """Run one `cairn -p prompt --continue` against the served server."""

    out, err = io.StringIO(), io.StringIO()
    listener = HeadlessListener(as_json=as_json, out=out, err=err)
    session = client_session(served.url, repo, listener)
    code = await run_headless(session, listener, prompt)
    return Printed(code, out.getvalue(), err.getvalue())


def test_compact_is_recognised_with_and_without_a_focus() -> None:
    assert compact_focus("/compact") == ""
    assert compact_focus("  /compact   keep the API notes ") == "keep the API notes"
    assert compact_focus("/compacted") is None
    assert compact_focus("please /compact") is None


async def test_compact_prints_the_compaction_or_why_there_was_none(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(
        script(
            {"text": "First answer."},
            {"text": "Second answer."},
            {"text": "SUMMARY: two questions."},
        )
    )
    nothing = await headless(served, own_repo, "/compact")
    assert (nothing.code, nothing.out) == (1, "")
    assert nothing.err.startswith("cairn: nothing to compact yet")

    assert (await headless(served, own_repo, "first question")).code == 0
    assert (await headless(served, own_repo, "second question")).code == 0
    compacted = await headless(served, own_repo, "/compact keep the questions")
    assert compacted.code == 0, compacted.err
    assert compacted.out.startswith("Context compacted on request (summary): ")
    assert "keep the questions" in json.dumps(served.fake.requests[-1].body)

    again = await headless(served, own_repo, "/compact", as_json=True)
    assert again.code == 1
    assert json.loads(again.out)["code"] == "nothing_to_compact"


async def test_a_retried_answer_says_why_and_restarts_on_a_new_line(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(
        Script(
            [
                Turn(text="FIRST-TRY never finishes.", chunk_size=6, fault="drop_stream"),
                Turn(text="The second try completes."),
            ]
        )
    )
    printed = await headless(served, own_repo, "answer me")
    assert printed.code == 0, printed.err
    assert printed.out.endswith("\nThe second try completes.\n")
    assert "connection dropped mid-stream (attempt 1)" in printed.err
    assert "the partial answer above is void" in printed.err


async def test_init_with_a_focus_is_the_init_command_as_in_the_tui(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(script({"text": "Learned the billing module."}))
    init = await headless(served, own_repo, "/init look at the billing module")
    assert init.code == 0, init.err
    assert init.out == "Learned the billing module.\n"
    sent = json.dumps(served.fake.requests[-1].body)
    assert "Learn this repository the way a new engineer would" in sent
    assert "/init look at the billing module" in sent


async def test_help_lists_headless_commands_and_tui_only_ones_are_one_line(
    served: Served, own_repo: Path
) -> None:
    requests_before = len(served.fake.requests)
    helped = await headless(served, own_repo, "/help")
    assert helped.code == 0
    assert "/compact [focus]" in helped.out and "/init" in helped.out
    assert "/memory" not in helped.out
    memory = await headless(served, own_repo, "/memory")
    assert (memory.code, memory.out) == (2, "")
    assert memory.err == "cairn: /memory works in the TUI only\n"
    unknown = await headless(served, own_repo, "/nope")
    assert unknown.code == 2
    try_these = "/init, /compact [focus], /reflect or /model [name]"
    assert unknown.err == f"cairn: Unknown command /nope (try {try_these})\n"
    assert len(served.fake.requests) == requests_before  # none of these reached the model


async def test_a_call_the_server_refuses_prints_as_a_failed_call_does(
    served: Served, own_repo: Path
) -> None:
    turns = (
        {
            "tool_calls": [
                call("read", path="missing.py"),
                call("read", offset=3),
                call("archival_insert", text="The build uses uv."),
            ]
        },
        {"text": "Neither worked."},
    )
    served.fake.set_script(script(*turns))
    printed = await headless(served, own_repo, "read two files")
    assert printed.code == 0, printed.err
    failed = [line for line in printed.err.splitlines() if line.startswith("! ")]
    assert failed[0].startswith("! Read missing.py: ")  # the client ran it: no such file
    assert failed[1].startswith("! read: invalid arguments for read: path")  # never sent
    assert len(failed) == 2
    assert "\n✓ archival_insert\n" in printed.err  # one the server ran itself

    served.fake.set_script(script(*turns))
    printed = await headless(served, own_repo, "read two files", as_json=True)
    events = [json.loads(line) for line in printed.out.splitlines()]
    [made] = [
        e["tool_calls"] for e in events if e["type"] == "assistant_message" and e["tool_calls"]
    ]
    settled = [e for e in events if e["type"] == "tool_settled" and e["status"] == "error"]
    assert [e["call_id"] for e in settled] == [
        next(e["call_id"] for e in events if e["type"] == "tool_request"),
        made[1]["call_id"],  # the model's id: no request was ever made for it
    ]
    assert settled[1]["reason"].startswith("invalid arguments for read: path")
