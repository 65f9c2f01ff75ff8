"""`cairn conversations list`: this repository's conversations with their title, last activity
and message count, most recent first (the ids `cairn --resume ID` takes).

Owns that command's output; reaching the server is memory_cli's.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from cairn_client.memory_cli import run_with_server
from cairn_client.memory_format import when

if TYPE_CHECKING:  # the REST client (httpx) is imported only when a command runs
    from cairn_protocol.rest import AgentPublic, ConversationPublic

    from cairn_client.api import CairnApi

conversations_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no <bool>/<str> type column
    help="The agent's conversations in this repository (continue one with `cairn --resume ID`).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@conversations_app.command("list")
def list_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON array: id, title, last_activity, messages.")
    ] = False,
) -> None:
    """The conversations, most recent activity first: id, title, last activity, messages."""

    async def work(api: CairnApi, agent: AgentPublic) -> list[ConversationPublic]:
        return await api.list_conversations(agent.id)

    conversations = run_with_server(work)
    if as_json:
        rows = [
            {
                "id": conversation.id,
                "title": conversation.title,
                "last_activity": conversation.updated_at.isoformat(),
                "message_count": conversation.message_count,
                "helper_of": conversation.parent_id,
            }
            for conversation in conversations
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not conversations:
        typer.echo("no conversations yet: start one with `cairn`")
        return
    # One line each, never folded: the id is copied whole into `cairn --resume ID`.
    for conversation in conversations:
        count = conversation.message_count
        typer.echo(
            f"{conversation.id}  {when(conversation.updated_at)}  "
            f"{count:>3} message{' ' if count == 1 else 's'}  "
            f"{'↳ ' if conversation.parent_id else ''}"
            f"{conversation.title or '(no request yet)'}"
            f"{f'  (helper of {conversation.parent_id})' if conversation.parent_id else ''}"
        )
