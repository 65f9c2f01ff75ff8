"""The TUI tells "never connected" from "connection lost", and refuses a model it cannot use at
once: a failure that ends the app is kept for `cairn` to print as one line with its exit code."""

from __future__ import annotations

from cairn_client.errors import CairnError, ExitCode
from cairn_client.session import SessionFailed
from cairn_client.tui.screens.setup import SetupScreen
from support.scripted_tui import scripted_run, settle, welcome
from support.tui import chat_entries, status_text


async def test_a_server_never_reached_closes_the_app_with_the_line_to_print() -> None:
    unreachable = SessionFailed("cannot reach the server at http://127.0.0.1:9: connection refused")
    async with scripted_run(fail_with=unreachable, announce_failure=True) as (app, session, pilot):
        await settle(pilot)
        assert not app.is_running  # closed by itself: nothing to do in it without a server
    assert app.failure is unreachable and app.failure.exit_code == ExitCode.USAGE
    assert session.closed


async def test_a_connection_lost_says_so_then_says_when_it_gives_up() -> None:
    async with scripted_run() as (app, _session, pilot):
        app.connection_changed("reconnecting", "the connection dropped")
        app.connection_changed("reconnecting", "connection refused")  # one line per loss
        lost = (
            "lost the connection to the server at http://127.0.0.1:8 and gave up reconnecting "
            "after 30 tries (connection refused)"
        )
        app.connection_changed("failed", lost)
        await settle(pilot)
        assert chat_entries(app) == [
            "Server connection lost: the connection dropped — reconnecting…",
            "Lost the connection to the server at http://127.0.0.1:8 and gave up reconnecting "
            "after 30 tries (connection refused). Quit and start cairn again to continue this "
            "conversation.",
        ]
        assert "connection failed: lost the connection" in status_text(app)
        assert app.is_running  # what is on screen stays readable


async def test_a_model_the_server_cannot_use_is_refused_as_the_app_opens() -> None:
    problem = (
        "Unknown model 'nosuch/model': a model must be written as \"openai/<model>\", "
        '"anthropic/<model>".\nConfigure a model with environment variables, then restart Cairn'
    )
    unusable = welcome(model="nosuch/model", model_problem=problem)
    async with scripted_run(unusable) as (app, session, pilot):
        assert isinstance(app.screen, SetupScreen)
        await pilot.press("q")
        await settle(pilot)
    assert session.sent == []
    assert isinstance(app.failure, CairnError) and app.failure.exit_code == ExitCode.USAGE
    assert app.failure.message.startswith("Unknown model 'nosuch/model': a model must be")
    assert "\n" not in str(app.failure)


async def test_a_model_the_provider_does_not_have_is_refused_as_the_app_opens_with_3() -> None:
    problem = (
        "OpenAI at http://127.0.0.1:8/v1 has no model 'gpt-nonexistent' "
        "(openai/gpt-nonexistent); it lists openai/gpt-4o, openai/gpt-4.1"
    )
    missing = welcome(model="openai/gpt-nonexistent", model_problem=problem, model_not_offered=True)
    async with scripted_run(missing) as (app, session, pilot):
        assert isinstance(app.screen, SetupScreen)
        await pilot.press("q")
        await settle(pilot)
    assert session.sent == []
    assert isinstance(app.failure, CairnError) and app.failure.exit_code == ExitCode.MODEL
    assert app.failure.message == problem  # its own line, no configuration hint
