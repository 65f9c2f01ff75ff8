"""The slash commands, declared once: name, argument, one-line help and what each front end does.

Owns recognising `/name [argument]` in what the user typed and the table the TUI, headless mode
and the TUI's command palette read; each front end implements the host its handlers call.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

FrontEnd = Literal["tui", "headless"]
# What may follow the name: nothing, one word, or any text (a focus).
Argument = Literal["none", "word", "text"]

_SLASH = re.compile(r"^/(?P<name>\w+)(?:\s+(?P<argument>.*))?$", re.DOTALL)
FRONT_END_NAMES: dict[FrontEnd, str] = {"tui": "the TUI", "headless": "headless mode (-p)"}


class TuiHost(Protocol):
    """What the TUI's handlers call (implemented by the app)."""

    async def show_help(self, lines: list[str]) -> None: ...

    async def refuse(self, line: str) -> None:
        """Tell the user why the command did not run."""

    async def send_init(self, text: str) -> None:
        """Send `text` (`/init [focus]`) as the init command."""

    async def compact(self, focus: str | None) -> None: ...

    async def reflect(self) -> None:
        """Reflect on the conversation now: memory edits by "reflection", and their cost."""

    async def permission_mode(self, name: str) -> None:
        """Show the permission mode ("") or set it."""

    async def undo(self) -> None: ...

    async def show_cost(self) -> None:
        """Say what this session's model calls cost: tokens in, cached, out, and dollars."""

    async def model(self, name: str) -> None:
        """Show the agent's model ("") or switch it (kept for the next `cairn`)."""

    async def open_memory(self) -> None: ...

    async def open_context(self) -> None: ...

    async def new_conversation(self) -> None:
        """Start a new conversation of the same agent and show it (an empty chat)."""

    async def pick_conversation(self) -> None:
        """Open the list of the agent's conversations; the one chosen is opened."""

    async def close_and_quit(self) -> None: ...


class HeadlessHost(Protocol):
    """What headless handlers call; each returns the exit code of `cairn -p`."""

    def show_help(self, lines: list[str]) -> int: ...

    def refuse(self, line: str) -> int:
        """Print why the command did not run; the exit code (2)."""

    async def send_init(self, text: str) -> int: ...

    async def compact(self, focus: str | None) -> int: ...

    async def reflect(self) -> int:
        """Print what the reflection did and cost; 0 when it ended, 1 when it failed."""

    async def model(self, name: str) -> int:
        """Print the agent's model ("") or switch it; 2 when the server refuses the name."""


TuiHandler = Callable[[TuiHost, "Invocation"], Awaitable[None]]
HeadlessHandler = Callable[[HeadlessHost, "Invocation"], Awaitable[int]]


@dataclass(frozen=True)
class SlashCommand:
    """One command; it works in the front ends that have a handler for it."""

    name: str
    help: str
    argument: Argument = "none"
    hint: str = ""  # how the argument is shown in the command list, e.g. "[focus]"
    key: str = ""  # the TUI key that does the same, e.g. "f2"
    tui: TuiHandler | None = None
    headless: HeadlessHandler | None = None

    @property
    def usage(self) -> str:
        return f"/{self.name}" + (f" {self.hint}" if self.hint else "")

    def works_in(self, front_end: FrontEnd) -> bool:
        return (self.tui if front_end == "tui" else self.headless) is not None

    def where(self) -> str:
        """Where the command works, for a front end that lacks it."""
        both = [name for end, name in FRONT_END_NAMES.items() if self.works_in(end)]
        return " and ".join(both) + " only" if both else "nowhere"


@dataclass(frozen=True)
class Invocation:
    """`/name argument` as typed; `command` is None for a name no front end knows."""

    text: str
    name: str
    argument: str
    command: SlashCommand | None


def _focus(argument: str) -> str | None:
    return argument or None


async def _tui_help(host: TuiHost, _invocation: Invocation) -> None:
    await host.show_help(help_lines("tui"))


async def _headless_help(host: HeadlessHost, _invocation: Invocation) -> int:
    return host.show_help(help_lines("headless"))


COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand(
        "memory",
        "open the agent's memory blocks (read, edit, history)",
        key="f2",
        tui=lambda host, _: host.open_memory(),
    ),
    SlashCommand(
        "context",
        "show what the model sees: tokens per section of the context",
        key="f3",
        tui=lambda host, _: host.open_context(),
    ),
    SlashCommand(
        "init",
        "learn this repository again into the project block (text after /init says what to "
        "look at)",
        argument="text",
        tui=lambda host, invocation: host.send_init(invocation.text),
        headless=lambda host, invocation: host.send_init(invocation.text),
    ),
    SlashCommand(
        "compact",
        "compact the conversation now, keeping the focus above all",
        argument="text",
        hint="[focus]",
        tui=lambda host, invocation: host.compact(_focus(invocation.argument)),
        headless=lambda host, invocation: host.compact(_focus(invocation.argument)),
    ),
    SlashCommand(
        "reflect",
        "reflect on this conversation now: the reflection model keeps the memory blocks "
        "(cairn memory history shows its edits)",
        tui=lambda host, _: host.reflect(),
        headless=lambda host, _: host.reflect(),
    ),
    SlashCommand(
        "undo",
        "revert the last change this session applied",
        tui=lambda host, _: host.undo(),
    ),
    SlashCommand(
        "mode",
        "show the permission mode, or set it for this session",
        argument="word",
        hint="[name]",
        tui=lambda host, invocation: host.permission_mode(invocation.argument),
    ),
    SlashCommand(
        "model",
        "show the agent's model, or switch it (kept for the next cairn; default: the server's)",
        argument="word",
        hint="[name]",
        tui=lambda host, invocation: host.model(invocation.argument),
        headless=lambda host, invocation: host.model(invocation.argument),
    ),
    SlashCommand(
        "cost",
        "show this session's tokens and cost",
        tui=lambda host, _: host.show_cost(),
    ),
    SlashCommand(
        "new",
        "start a new conversation with the same agent (its memory stays)",
        tui=lambda host, _: host.new_conversation(),
    ),
    SlashCommand(
        "clear",
        "clear the chat by starting a new conversation (as /new; the old one stays in /resume)",
        tui=lambda host, _: host.new_conversation(),
    ),
    SlashCommand(
        "resume",
        "pick an earlier conversation of this agent and continue it",
        tui=lambda host, _: host.pick_conversation(),
    ),
    SlashCommand("quit", "close the session and quit", tui=lambda host, _: host.close_and_quit()),
    SlashCommand("help", "list these commands", tui=_tui_help, headless=_headless_help),
)
_BY_NAME = {command.name: command for command in COMMANDS}


def parse(text: str) -> Invocation | None:
    """The command in `text`, or None for a message to the agent: a known command with an
    argument it does not take (`/quit now`) or text after an unknown name stays a message."""
    match = _SLASH.match(text.strip())
    if match is None:
        return None
    name, argument = match.group("name"), (match.group("argument") or "").strip()
    command = _BY_NAME.get(name)
    if command is None:
        return None if argument else Invocation(text.strip(), name, "", None)
    takes = command.argument
    if argument and (takes == "none" or (takes == "word" and len(argument.split()) > 1)):
        return None
    return Invocation(text.strip(), name, argument, command)


def compact_focus(text: str) -> str | None:
    """For `/compact [focus]`, the focus ("" when none was given); None for anything else."""
    invocation = parse(text)
    return invocation.argument if invocation and invocation.name == "compact" else None


def commands_for(front_end: FrontEnd) -> list[SlashCommand]:
    return [command for command in COMMANDS if command.works_in(front_end)]


def commands_line(front_end: FrontEnd) -> str:
    """The commands to try, e.g. "/memory (f2), /context (f3), … or /quit" (not /help)."""
    shown = [
        command.usage + (f" ({command.key})" if command.key else "")
        for command in commands_for(front_end)
        if command.name != "help"
    ]
    return ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else "".join(shown)


def help_lines(front_end: FrontEnd) -> list[str]:
    return [f"{command.usage} — {command.help}" for command in commands_for(front_end)]


def refusal(invocation: Invocation, front_end: FrontEnd) -> str:
    """The one line for a command this front end cannot run."""
    command = invocation.command
    if command is None:
        return f"Unknown command /{invocation.name} (try {commands_line(front_end)})"
    return f"/{command.name} works in {command.where()}"


async def run_in_tui(invocation: Invocation, host: TuiHost) -> None:
    """Run the command, or tell the user in one line why the TUI cannot."""
    handler = invocation.command.tui if invocation.command else None
    if handler is None:
        await host.refuse(refusal(invocation, "tui"))
    else:
        await handler(host, invocation)


async def run_headless(invocation: Invocation, host: HeadlessHost) -> int:
    """Run the command for its exit code, or refuse it in one line (exit code 2)."""
    handler = invocation.command.headless if invocation.command else None
    if handler is None:
        return host.refuse(refusal(invocation, "headless"))
    return await handler(host, invocation)
