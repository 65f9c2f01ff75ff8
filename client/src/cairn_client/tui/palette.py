"""The command palette (ctrl+p) lists the slash commands of the command table.

Owns the Textual Provider; choosing a command runs it as if typed without an argument.
"""

from __future__ import annotations

from functools import partial
from typing import Protocol, runtime_checkable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from cairn_client.commands import SlashCommand, commands_for


@runtime_checkable
class SlashCommandRunner(Protocol):
    async def run_slash_command(self, text: str) -> None: ...


class SlashCommandProvider(Provider):
    """The TUI's slash commands, by name and help."""

    async def discover(self) -> Hits:
        for command in commands_for("tui"):
            yield DiscoveryHit(command.usage, partial(self._run, command), help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in commands_for("tui"):
            score = matcher.match(command.usage)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(command.usage),
                    partial(self._run, command),
                    help=command.help,
                )

    async def _run(self, command: SlashCommand) -> None:
        if isinstance(self.app, SlashCommandRunner):
            await self.app.run_slash_command(f"/{command.name}")
