"""Protocol frames: every message round-trips, bad frames get codes, schemas are current."""

from __future__ import annotations

from pathlib import Path

import pytest
from cairn_protocol import (
    PROTOCOL_VERSION,
    AssistantDelta,
    AssistantMessage,
    Cancel,
    ErrorEvent,
    FrameError,
    Hello,
    HistoryItem,
    HistoryToolCall,
    Ping,
    Pong,
    RunFinished,
    RunStarted,
    ToolRequest,
    ToolResult,
    ToolSettled,
    ToolWithdrawn,
    Usage,
    UserMessage,
    Welcome,
    WorkspaceIdentity,
    parse_client_frame,
    parse_server_frame,
)
from cairn_protocol.messages import Frame
from cairn_protocol.schema import main as schema_main
from cairn_protocol.schema import render_schemas, stale_files

WORKSPACE = WorkspaceIdentity(
    root_commit="c0ffee", origin="github.com/acme/app", display_name="app", path="/src/app"
)

CLIENT_FRAMES: list[Frame] = [
    Hello(
        protocol_version=PROTOCOL_VERSION,
        token="t",
        workspace=WORKSPACE,
        tools=["read"],
        conversation="new",
        resume_after=7,
        client_id="cli_0123",
    ),
    UserMessage(text="fix the bug"),
    ToolResult(call_id="call_1", status="ok", content="1\tprint()"),
    ToolResult(call_id="call_2", status="denied", reason="not that file"),
    ToolResult(call_id="call_3", status="error", content="", reason="no such file"),
    Cancel(),
    Ping(nonce="n1"),
]

SERVER_FRAMES: list[Frame] = [
    Welcome(
        seq=3,
        agent_id="agt_1",
        conversation_id="cnv_1",
        model="openai/gpt-4o-mini",
        client_id="cli_0123",
        unknown_outcomes=["call_0"],
        history=[
            HistoryItem(
                role="assistant",
                text="hi",
                tool_calls=[
                    HistoryToolCall(call_id="c", tool="read", arguments={"path": "a"}, status="ok")
                ],
            )
        ],
    ),
    Welcome(
        agent_id="agt_1",
        conversation_id="cnv_1",
        model=None,
        model_problem="set CAIRN_MODEL",
        client_id="conn_1",
    ),
    RunStarted(seq=4, run_id="run_1", user_text="fix"),
    AssistantDelta(seq=4, run_id="run_1", text="Hel"),
    AssistantMessage(
        seq=5,
        run_id="run_1",
        text="Hello",
        tool_calls=[HistoryToolCall(call_id="c", tool="grep", arguments={"pattern": "x"})],
    ),
    ToolRequest(
        seq=6,
        run_id="run_1",
        call_id="call_1",
        tool="edit",
        arguments={"path": "a.py", "old_string": "a", "new_string": "b"},
        executor="cli_0123",
    ),
    ToolWithdrawn(seq=7, run_id="run_1", call_id="call_1", reason="interrupted by the user"),
    ToolSettled(seq=7, run_id="run_1", call_id="call_1", status="denied", reason="cancelled"),
    RunFinished(
        seq=8,
        run_id="run_1",
        stop_reason="end_turn",
        usage=Usage(input_tokens=10, cached_input_tokens=2, output_tokens=3, cost_usd=0.01),
        steps=2,
    ),
    ErrorEvent(code="unknown_frame", message="what is this"),
    Pong(nonce="n1"),
]


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=lambda f: f.type)
def test_client_frames_round_trip(frame: Frame) -> None:
    assert parse_client_frame(frame.model_dump_json()) == frame


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=lambda f: f.type)
def test_server_frames_round_trip(frame: Frame) -> None:
    assert parse_server_frame(frame.model_dump_json()) == frame


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        ("{not json", "malformed_frame", "not valid JSON"),
        ("[1, 2]", "malformed_frame", "JSON object"),
        ('{"text": "no type"}', "malformed_frame", "'type'"),
        ('{"type": "launch_missiles"}', "unknown_frame", "launch_missiles"),
        ('{"type": "user_message", "text": ""}', "malformed_frame", "text"),
        ('{"type": "tool_result", "call_id": "c", "status": "maybe"}', "malformed_frame", "status"),
        ('{"type": "cancel", "surprise": 1}', "malformed_frame", "surprise"),
    ],
)
def test_bad_client_frames_raise_coded_errors(raw: str, code: str, words: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_client_frame(raw)
    assert caught.value.code == code
    assert words in caught.value.message


def test_every_message_has_a_schema() -> None:
    files = render_schemas()
    tags = {type(f).model_fields["type"].default for f in CLIENT_FRAMES + SERVER_FRAMES}
    assert {f"messages/{tag}.json" for tag in tags} <= files.keys()
    assert {"tools/read.json", "tools/apply_patch.json", "tools/shell.json"} <= files.keys()


def test_checked_in_schemas_are_current() -> None:
    docs = Path(__file__).parents[2] / "docs" / "protocol"
    assert stale_files(docs) == [], "run: uv run cairn-protocol-schema"


def test_schema_command_writes_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "protocol"
    assert schema_main(["--out", str(out), "--check"]) == 1
    assert schema_main(["--out", str(out)]) == 0
    assert schema_main(["--out", str(out), "--check"]) == 0
    (out / "messages" / "hello.json").write_text("{}")
    assert schema_main(["--out", str(out), "--check"]) == 1
