"""Context budget, compaction, model retries and run limits in the real TUI, against a real server.

Covers what a person notices: /compact and its refusal, a compaction the budget forces, a
retried answer that shows once, the context use in the status line, and a loop that is stopped.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cairn_client.api import CairnApi
from cairn_client.formatting import context_label
from cairn_client.tui.app import CairnApp
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script, Turn
from support.servers import TEST_TOKEN, Served, cairn_server, call, script, sqlite_url
from support.sessions import sessions_for
from support.tui import chat_entries, status_text

# The real-server helpers live with the memory screen's tests (pytest puts this folder on
# sys.path); mypy names modules from the repository root, so it cannot follow this import.
from support.waiting import until
from textual.pilot import Pilot
from textual.widgets import Input

SIZE = (120, 36)
SUMMARY_MODEL = "anthropic/claude-haiku-4-5"


@pytest.fixture(scope="module")
def retrying_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module, retrying dropped model streams without waiting."""
    folder = tmp_path_factory.mktemp("context")
    with (
        FakeModelServer() as fake,
        cairn_server(sqlite_url(folder), fake, env={"CAIRN_RETRY_BASE_DELAY_S": "0"}) as server,
    ):
        yield Served(server.url, fake)


@asynccontextmanager
async def running_app(url: str, repo: Path) -> AsyncIterator[tuple[CairnApp, Pilot[Any]]]:
    app = CairnApp(sessions_for(url, repo), workspace_name="repo", api=CairnApi(url, TEST_TOKEN))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.agent_id is not None)
        yield app, pilot


async def send(app: CairnApp, pilot: Pilot[Any], text: str) -> None:
    app.query_one("#prompt", Input).value = text
    await pilot.press("enter")


async def exchange(app: CairnApp, pilot: Pilot[Any], text: str, answer: str) -> None:
    """Send `text` and wait until the run that answers it is over."""
    await send(app, pilot, text)
    await until(pilot, lambda: answer in chat_entries(app) and app.status.activity == "")


async def test_compact_after_two_exchanges_shows_the_compaction(
    retrying_server: Served, own_repo: Path
) -> None:
    retrying_server.fake.set_script(
        script(
            {"text": "First answer."},
            {"text": "Second answer."},
            {"text": "SUMMARY: the user asked two questions."},  # the summary call
        )
    )
    async with running_app(retrying_server.url, own_repo) as (app, pilot):
        await send(app, pilot, "/compact")
        nothing = "Nothing to compact yet: the conversation holds only its latest exchange"
        await until(pilot, lambda: nothing in chat_entries(app))
        assert app.status.activity == ""

        await exchange(app, pilot, "first question", "First answer.")
        await exchange(app, pilot, "second question", "Second answer.")
        assert re.search(r"ctx [\d.]+k?/100k", status_text(app))
        await send(app, pilot, "/compact keep the questions")
        await until(pilot, lambda: chat_entries(app)[-1].startswith("Context compacted"))

        line = chat_entries(app)[-1]
        match = re.fullmatch(
            r"Context compacted on request \(summary\): (\d+) messages → summary; "
            r"([\d,]+) → ([\d,]+) tokens of 100,000 \(freed ([\d,]+)\)",
            line,
        )
        assert match is not None, line
        before, after, freed = (int(g.replace(",", "")) for g in match.groups()[1:])
        assert int(match.group(1)) >= 2 and after < before and freed == before - after
        assert app.status.context == (after, 100_000)
        assert app.status.activity == ""
        shown = status_text(app)
    summary_request = str(retrying_server.fake.requests[-1].body)
    assert "keep the questions" in summary_request

    # Started again, cairn shows the gauge the compaction left until the next request.
    async with running_app(retrying_server.url, own_repo) as (app, pilot):
        assert app.status.context == (after, 100_000)
        await until(pilot, lambda: status_text(app) == shown)  # totals and gauge as they were
        assert context_label(after, 100_000) in shown


async def test_a_dropped_stream_is_retried_and_its_text_shown_once(
    retrying_server: Served, own_repo: Path
) -> None:
    retrying_server.fake.set_script(
        Script(
            [
                Turn(text="FIRST-TRY words that never finish.", chunk_size=6, fault="drop_stream"),
                Turn(
                    text="The second try streams slowly and completes.",
                    delay_s=0.5,
                    chunk_size=6,
                    chunk_delay_s=0.05,
                ),
            ]
        )
    )
    async with running_app(retrying_server.url, own_repo) as (app, pilot):
        await send(app, pilot, "answer me")
        await until(pilot, lambda: "retrying in" in status_text(app))
        assert "connection dropped mid-stream (attempt 1)" in status_text(app)
        assert chat_entries(app) == ["answer me"]  # the void text is gone before the retry

        await until(pilot, lambda: any("second try" in e for e in chat_entries(app)))
        assert not any("FIRST-TRY" in entry for entry in chat_entries(app))
        assert "running…" in status_text(app)

        final = "The second try streams slowly and completes."
        await until(pilot, lambda: app.status.activity == "")
        assert chat_entries(app) == ["answer me", final]
        assert re.search(r"ctx [\d.]+k?/100k · in [1-9]", status_text(app))


async def test_a_loop_of_failing_calls_says_which_limit_and_continue_goes_on(
    retrying_server: Served, own_repo: Path
) -> None:
    failing_read = {"tool_calls": [call("read", path="missing.py")]}
    answer = {"text": "missing.py does not exist; nothing to read."}
    retrying_server.fake.set_script(script(failing_read, failing_read, failing_read, answer))
    async with running_app(retrying_server.url, own_repo) as (app, pilot):
        await send(app, pilot, "read missing.py")
        await until(pilot, lambda: chat_entries(app)[-1].startswith("Loop detected"))
        assert chat_entries(app)[-1] == (
            "Loop detected: the model made the same failing read call 3 times, the run's repeat "
            'limit (CAIRN_REPEAT_LIMIT). Send "continue" to pick the work up where it stopped.'
        )
        assert sum(e.startswith("! read missing.py error") for e in chat_entries(app)) == 3

        await send(app, pilot, "continue")  # the model goes on with the whole history
        await until(pilot, lambda: chat_entries(app)[-1] == answer["text"])
    messages = retrying_server.fake.requests[-1].body["messages"]
    assert messages[-1] == {"role": "user", "content": "continue"}
    assert [m["role"] for m in messages].count("tool") == 3


async def test_a_small_budget_compacts_during_a_run_and_says_so(
    tmp_path: Path, own_repo: Path, fake_model: FakeModelServer
) -> None:
    padding = " ".join(f"detail-{n}" for n in range(250))
    fake_model.set_script(script(*[{"text": f"Answer {k}."} for k in range(8)]))
    with (
        FakeModelServer() as summaries,
        cairn_server(
            sqlite_url(tmp_path),
            fake_model,
            context_budget=6000,
            compaction_threshold=0.6,
            env={
                "CAIRN_SUMMARY_MODEL": SUMMARY_MODEL,
                "ANTHROPIC_BASE_URL": summaries.anthropic_base_url,
                "ANTHROPIC_API_KEY": "test-anthropic-key",
            },
        ) as server,
    ):
        summaries.set_script(Script([Turn(text=f"SUMMARY-{n}") for n in range(4)]))
        async with running_app(server.url, own_repo) as (app, pilot):
            for k in range(8):
                await exchange(app, pilot, f"Question {k}: {padding}", f"Answer {k}.")
                if any(e.startswith("Context compacted") for e in chat_entries(app)):
                    break
            compacted = [e for e in chat_entries(app) if e.startswith("Context compacted")]
            assert compacted, chat_entries(app)
            assert re.fullmatch(
                r"Context compacted \(summary\): \d+ messages? → summary; "
                r"[\d,]+ → [\d,]+ tokens of 6,000 \(freed [\d,]+\)",
                compacted[0],
            )
            assert re.search(r"ctx [\d.]+k?/6k", status_text(app))
