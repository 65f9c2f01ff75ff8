"""Idempotent tool calls: a call_id that was executed is never run again, even by a new cairn.

The record is a real SQLite file; the restart is a real second session against a real server
whose welcome replays the pending request.
"""

from __future__ import annotations

import json
from pathlib import Path

from cairn_client.call_log import INTERRUPTED, CallLog
from cairn_client.policy.types import Approval
from cairn_protocol import ToolRequest, ToolResult, Welcome
from support.listener import RecordingListener
from support.servers import Served, call, script
from support.sessions import client_session, welcomed


def test_a_finished_call_is_replayed_with_its_result(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "calls.sqlite3", tmp_path / "repo")
    result = ToolResult(call_id="c1", status="ok", content="Done: edited a.py.")

    assert log.recorded("c1") is None
    log.start("c1")
    log.finish(result)

    again = CallLog(tmp_path / "calls.sqlite3", tmp_path / "repo")  # a later process
    assert again.recorded("c1") == result
    assert CallLog(tmp_path / "calls.sqlite3", tmp_path / "other").recorded("c1") is None


def test_a_call_cut_off_mid_run_is_reported_not_rerun(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "calls.sqlite3", tmp_path / "repo")
    log.start("c1")

    assert log.recorded("c1") == ToolResult(call_id="c1", status="error", reason=INTERRUPTED)


def test_the_log_keeps_only_the_newest_calls(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "calls.sqlite3", tmp_path / "repo", keep=3)
    for index in range(5):
        log.start(f"c{index}")
        log.finish(ToolResult(call_id=f"c{index}", status="ok"))

    assert [log.recorded(f"c{i}") is not None for i in range(5)] == [False, False] + [True] * 3


def test_a_large_log_is_pruned_in_batches_and_stays_bounded(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "calls.sqlite3", tmp_path / "repo", keep=40)
    for index in range(200):
        log.start(f"c{index}")
        log.finish(ToolResult(call_id=f"c{index}", status="ok"))

    kept = [index for index in range(200) if log.recorded(f"c{index}") is not None]
    assert kept[-40:] == list(range(160, 200))  # the newest are all there
    assert 40 <= len(kept) <= 44  # pruned every keep/10 writes, never far over the bound


def test_the_log_and_its_side_files_are_private(tmp_path: Path) -> None:
    log = CallLog(tmp_path / "calls.sqlite3", tmp_path / "repo")
    log.start("c1")
    log.finish(ToolResult(call_id="c1", status="ok", content="tool output"))

    files = sorted(path.name for path in tmp_path.iterdir())
    assert "calls.sqlite3" in files
    assert {(tmp_path / name).stat().st_mode & 0o777 for name in files} == {0o600}


def test_an_unusable_log_does_not_stop_the_tools(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the folder should be")
    log = CallLog(tmp_path / "blocked" / "calls.sqlite3", tmp_path / "repo")

    log.start("c1")
    assert log.recorded("c1") is None


async def test_a_restarted_client_answers_a_pending_request_without_running_it(
    served: Served, own_repo: Path, tmp_path: Path
) -> None:
    served.fake.set_script(
        script(
            {"text": "Appending.", "tool_calls": [call("shell", command="echo ran >> count.txt")]},
            {"text": "All done."},
        )
    )
    log = CallLog(tmp_path / "calls.sqlite3", own_repo)
    first = RecordingListener([Approval("once")])
    first.hold_approvals.clear()  # killed while the person reads the command
    killed = client_session(served.url, own_repo, first, call_log=log)
    async with welcomed(killed, first):
        await killed.send_user_message("count")
        await first.wait_for(lambda: bool(first.asked))
    request = first.asked[0].request
    # What a process killed right after running it (before the answer left) has on disk:
    (own_repo / "count.txt").write_text("ran\n")
    log.start(request.call_id)
    log.finish(ToolResult(call_id=request.call_id, status="ok", content="ran once"))

    second = RecordingListener([Approval("once")])
    successor = client_session(served.url, own_repo, second, call_log=log)
    async with welcomed(successor, second):
        await second.wait_for(lambda: bool(second.of_type("run_finished")), timeout=30)

    welcome = second.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    assert [r.call_id for r in welcome.pending_tool_requests] == [request.call_id]
    assert second.asked == [] and second.handled == []  # nothing asked, nothing run
    assert (own_repo / "count.txt").read_text() == "ran\n"
    assert "ran once" in json.dumps(served.fake.requests[-1].body)


async def test_a_request_seen_twice_in_one_session_runs_once(
    served: Served, own_repo: Path, tmp_path: Path
) -> None:
    log = CallLog(tmp_path / "calls.sqlite3", own_repo)
    listener = RecordingListener([Approval("once"), Approval("once")])
    client = client_session(served.url, own_repo, listener, call_log=log)
    request = ToolRequest(
        run_id="r", call_id="c-dup", tool="shell", arguments={"command": "echo x >> dup.txt"}
    )

    await client._answer(request)
    await client._answer(request)
    fresh = client_session(
        served.url, own_repo, listener, call_log=log
    )  # another process, same workspace
    await fresh._answer(request)

    assert (own_repo / "dup.txt").read_text() == "x\n"
    assert len(listener.asked) == 1
