"""Snapshot of the memory screen against a real server, with block contents set by the test.

Regenerate with `uv run pytest tests/client/test_tui_memory_snapshots.py --snapshot-update` and
look at the SVG under tests/client/__snapshots__/ before accepting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cairn_client.api import CairnApi
from cairn_client.tui.app import CairnApp
from cairn_client.tui.screens.memory import MemoryScreen
from cairn_server.api.background import BackgroundServer
from pytest_textual_snapshot import SVGImageExtension  # type: ignore[import-untyped]
from support.servers import TEST_TOKEN
from support.sessions import sessions_for
from support.waiting import until
from textual.pilot import Pilot
from textual.widgets import Input

SVGImageExtension.file_extension = "svg"  # see test_tui_snapshots.py

TERMINAL = (100, 30)

BLOCKS = {
    "persona": ("How I work here.", "I read before I change and run the tests I touch."),
    "human": ("What I know about the user.", "Prefers small commits.\nReviews every diff."),
    "project": (
        "This codebase.",
        "# shop-api\n\nFastAPI service for orders.\n\n"
        "- test: uv run pytest -q\n- lint: uv run ruff check .\n",
    ),
}


def test_memory_screen_with_blocks(snap_compare: Any, server: BackgroundServer, repo: Path) -> None:
    app = CairnApp(
        sessions_for(server.url, repo),
        workspace_name="repo",
        api=CairnApi(server.url, TEST_TOKEN),
    )

    async def open_memory(pilot: Pilot[Any]) -> None:
        pilot.app.query_one("#prompt", Input).cursor_blink = False
        await until(pilot, lambda: app.agent_id is not None)
        agent_id = app.agent_id or ""
        async with CairnApi(server.url, TEST_TOKEN) as api:
            for label, (description, value) in BLOCKS.items():
                await api.update_block(agent_id, label, value=value, description=description)
            await api.create_block(
                agent_id,
                "style",
                value="Black, 100 columns.",
                description="Code style",
                read_only=True,
            )
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, MemoryScreen))
        screen = app.screen
        assert isinstance(screen, MemoryScreen)
        await until(pilot, lambda: screen.block_list.option_count == 4)
        await pilot.press("down", "down")
        await until(pilot, lambda: screen.selected == "project")
        screen.editor.cursor_blink = False
        await pilot.pause()

    assert snap_compare(app, terminal_size=TERMINAL, run_before=open_memory)
