"""The plan review screen on its own: each key's answer, and Esc backing out of typing."""

from __future__ import annotations

from typing import Any

import pytest
from cairn_client.ticket.flow import PlanDecision
from cairn_client.tui.screens.plan import NO_FEEDBACK, PlanScreen
from textual.app import App
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, TextArea

PLAN = "1. Make total() return sum(items).\n2. Add a test."


class PlanReviewApp(App[None]):
    """Shows the plan screen at once and keeps every decision it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.decisions: list[PlanDecision | None] = []

    def on_mount(self) -> None:
        self.push_screen(PlanScreen(PLAN, "Fix total"), callback=self.decisions.append)


async def review(*keys: str, typed: str | None = None, then: tuple[str, ...] = ()) -> PlanReviewApp:
    """Press `keys`, type `typed` into whatever has focus (editor or feedback), press `then`."""
    app = PlanReviewApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, *keys)
        if typed is not None:
            await type_into_focus(pilot, typed)
        await press(pilot, *then)
    return app


async def press(pilot: Pilot[Any], *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await pilot.pause()


async def type_into_focus(pilot: Pilot[Any], text: str) -> None:
    focused = pilot.app.focused
    if isinstance(focused, TextArea):
        focused.text = text
    else:
        assert isinstance(focused, Input)
        focused.value = text
    await pilot.pause()


def on_the_plan_view(app: App[Any]) -> bool:
    screen = app.screen
    return (
        isinstance(screen, PlanScreen)
        and screen.query_one("#plan-view").display
        and not screen.query_one("#plan-editor").display
        and not screen.query_one("#plan-feedback").display
    )


async def test_y_approves_the_plan() -> None:
    app = await review("y")

    assert app.decisions == [PlanDecision("approve", PLAN)]


async def test_esc_on_the_plan_stops_the_ticket() -> None:
    app = await review("escape")

    assert app.decisions == [PlanDecision("stop")]


@pytest.mark.parametrize(
    ("opens", "typing_in", "typed", "then", "decision"),
    [
        pytest.param(
            "e",
            TextArea,
            "A plan I gave up on",
            "y",
            PlanDecision("approve", PLAN),
            id="esc in the editor, then the plan can be approved",
        ),
        pytest.param("n", Input, None, "escape", PlanDecision("stop"), id="esc in the feedback"),
    ],
)
async def test_esc_while_typing_goes_back_to_the_plan(
    opens: str, typing_in: type[Widget], typed: str | None, then: str, decision: PlanDecision
) -> None:
    app = PlanReviewApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await press(pilot, opens)
        assert isinstance(app.focused, typing_in)
        if typed is not None:
            await type_into_focus(pilot, typed)
        await press(pilot, "escape")

        assert app.decisions == []
        assert on_the_plan_view(app)
        await press(pilot, then)

    assert app.decisions == [decision]


async def test_ctrl_s_approves_the_edited_plan() -> None:
    app = await review("e", typed="1. Make total() return sum(items) only.", then=("ctrl+s",))

    assert app.decisions == [PlanDecision("approve", "1. Make total() return sum(items) only.")]


async def test_n_rejects_with_the_feedback_typed() -> None:
    app = await review("n", typed="smaller, please", then=("enter",))

    assert app.decisions == [PlanDecision("reject", "smaller, please")]


async def test_n_then_enter_alone_rejects_with_a_default_reason() -> None:
    app = await review("n", then=("enter",))

    assert app.decisions == [PlanDecision("reject", NO_FEEDBACK)]
