"""A run stopped by a limit, headless: the sentence says which limit and how much was used, and
"continue" picks the work up with the whole history (a real session against a real server).

The same endings in the TUI are in test_tui.py; the real `cairn -p` in tests/e2e/test_headless.py.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from cairn_client.formatting import CONTINUE_HEADLESS
from cairn_client.headless import HeadlessListener, run_headless
from cairn_fakes.runner import FakeModelServer
from support.servers import cairn_server, call, script, sqlite_url
from support.sessions import client_session

READ = {"tool_calls": [call("read", path="src/app.py")]}
READ_MISSING = {"tool_calls": [call("read", path="missing.py")]}
DONE = {"text": "Done: total() returns 1."}


async def headless(url: str, repo: Path, prompt: str) -> tuple[int, str, str]:
    """`cairn -p prompt --continue` against the server at `url`: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    listener = HeadlessListener(as_json=False, out=out, err=err)
    code = await run_headless(client_session(url, repo, listener), listener, prompt)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("limit", "turns", "sentence"),
    [
        (
            {"step_limit": 2},
            [READ, READ, DONE],
            r"Step limit reached: stopped after 2 model calls, the run's step limit "
            r"\(CAIRN_STEP_LIMIT\)\.",
        ),
        (
            {"run_token_limit": 500},
            [READ, DONE],
            r"Token limit reached: stopped after [\d,]+ tokens in 1 model call, the run's limit "
            r"being 500 \(CAIRN_RUN_TOKEN_LIMIT\)\.",
        ),
        (
            {"run_cost_limit_usd": 0.0001},
            [READ, DONE],
            r"Cost limit reached: stopped after \$0\.00 in 1 model call, the run's limit being "
            r"\$0\.00 \(CAIRN_RUN_COST_LIMIT_USD\)\.",
        ),
        (
            {"repeat_limit": 2},
            [READ_MISSING, READ_MISSING, DONE],
            r"Loop detected: the model made the same failing read call 2 times, the run's "
            r"repeat limit \(CAIRN_REPEAT_LIMIT\)\.",
        ),
    ],
    ids=["steps", "tokens", "cost", "repeats"],
)
async def test_a_limit_says_which_and_how_much_and_continue_picks_the_work_up(
    tmp_path: Path,
    own_repo: Path,
    fake_model: FakeModelServer,
    limit: dict[str, Any],
    turns: list[dict[str, Any]],
    sentence: str,
) -> None:
    fake_model.set_script(script(*turns))
    with cairn_server(sqlite_url(tmp_path), fake_model, **limit) as server:
        code, _, err = await headless(server.url, own_repo, "what does total() return?")
        assert code == 1
        assert re.search(f"^cairn: {sentence} {re.escape(CONTINUE_HEADLESS)}$", err, re.M), err

        code, out, err = await headless(server.url, own_repo, "continue")
    assert (code, out.strip()) == (0, "Done: total() returns 1."), err
    messages = fake_model.requests[-1].body["messages"]
    assert messages[-1] == {"role": "user", "content": "continue"}
    asked = [c["id"] for m in messages if m["role"] == "assistant" for c in m["tool_calls"]]
    answered = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert asked and answered == asked  # the model has the whole history, every call answered


async def test_an_answer_cut_at_the_token_cap_exits_1_saying_how_to_go_on(
    tmp_path: Path, own_repo: Path, fake_model: FakeModelServer
) -> None:
    """finish_reason "length" is no normal end: `cairn -p` says the answer was cut, at what
    cap and which setting raises it, and exits 1; "continue" gets the rest."""
    fake_model.set_script(script({"text": "total() returns", "cut_at_cap": True}, DONE))
    settings: dict[str, Any] = {"env": {"CAIRN_MODEL_MAX_TOKENS": "32"}}
    with cairn_server(sqlite_url(tmp_path), fake_model, **settings) as server:
        code, out, err = await headless(server.url, own_repo, "what does total() return?")
        assert (code, out.strip()) == (1, "total() returns"), err
        sentence = (
            "cairn: Answer cut short: the answer was cut at 32 tokens, the cap on one answer; "
            'raise CAIRN_MODEL_MAX_TOKENS or say "continue". '
        )
        assert sentence + CONTINUE_HEADLESS in err
        code, out, err = await headless(server.url, own_repo, "continue")
    assert (code, out.strip()) == (0, "Done: total() returns 1."), err
