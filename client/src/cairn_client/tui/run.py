"""Running the TUI for a prepared launch, and cleaning up after it.

Owns the bridge from the blocking CLI to the Textual app's own event loop.
"""

from __future__ import annotations

from cairn_client.api import CairnApi
from cairn_client.launch import Launch
from cairn_client.listener import SessionListener
from cairn_client.mentions import Mentions
from cairn_client.tui.app import CairnApp, SessionRunner


def run_tui(
    launch: Launch,
    *,
    initial_input: str = "",
    conversation: str = "reopen",
    pick_conversation: bool = False,
    first_message: str = "",
) -> str | None:
    """Run the app until the user quits; returns "demo" if they asked for the demo. Raises
    the CairnError that ended it (`CairnApp.failure`), for `cairn` to print with its code.

    `conversation`: "reopen" (the one last open in the TUI), "latest" (`-c`: the most recent
    activity, maybe a `cairn -p` run's) or an id (`--resume ID`);
    `pick_conversation` opens the picker at start (`--resume` alone); `first_message` is sent
    once connected (`cairn "REQUEST"`)."""

    def start_session(listener: SessionListener) -> SessionRunner:
        return launch.session(listener, conversation, interactive=True)

    app = CairnApp(
        start_session,
        workspace_name=launch.workspace.identity.display_name,
        initial_input=initial_input,
        api=CairnApi(launch.endpoint.resolve, launch.endpoint.token),
        pick_conversation=pick_conversation,
        first_message=first_message,
        history=launch.history,
        mentions=Mentions(launch.workspace.root, launch.policy),
    )

    def tell(line: str) -> None:  # from the thread that restarted the local server
        app.call_from_thread(app.add_note, line)

    if launch.local is not None:  # a restart while the app runs is a line in the chat
        launch.local.notify = tell
    try:
        result = app.run()
    finally:
        launch.shutdown_now()
    if app.failure is not None:  # a server never reached, a connection lost, no usable model
        raise app.failure
    return result
