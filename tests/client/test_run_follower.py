"""Following one run's events: the run started for a message, its last answer and its end,
or the server's refusal to start it."""

from __future__ import annotations

import pytest
from cairn_client.listener import RunFollower, RunRefused
from cairn_protocol.messages import (
    AssistantMessage,
    ErrorEvent,
    RunFinished,
    RunStarted,
)


async def test_the_run_started_for_the_text_is_followed_to_its_end() -> None:
    run = RunFollower()
    run.follow(text="fix it")

    assert not run.sees(RunStarted(seq=1, run_id="other", user_text="something else"))
    assert run.sees(RunStarted(seq=2, run_id="r1", user_text="fix it"))
    assert not run.sees(AssistantMessage(seq=3, run_id="other", text="not ours"))
    run.sees(AssistantMessage(seq=4, run_id="r1", text="Done."))
    run.sees(AssistantMessage(seq=5, run_id="r1", text="  "))  # an empty step keeps the answer
    run.sees(RunFinished(seq=6, run_id="r1", stop_reason="end_turn"))

    assert run.finished.result().run_id == "r1" and run.last_answer == "Done."


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("no_model", "ANTHROPIC_API_KEY is not set"),
        ("run_in_progress", "a run is already going (started through another server process)"),
    ],
)
async def test_a_refused_message_ends_the_wait_with_the_servers_reason(
    code: str, message: str
) -> None:
    run = RunFollower()
    run.follow(text="fix it")

    run.sees(ErrorEvent(code=code, message=message))

    with pytest.raises(RunRefused, match=message.split(" ")[0]) as refused:
        run.finished.result()
    assert refused.value.code == code


async def test_following_again_starts_a_fresh_wait() -> None:
    run = RunFollower()
    run.follow(run_id="r1")
    run.sees(RunFinished(seq=1, run_id="r1", stop_reason="end_turn"))
    run.follow(text="next")

    assert not run.finished.done() and run.run_id is None
