"""The `cairn` command: the TUI by default, `-p` for headless, `ticket`, `demo`, `server`, `patch`.

Owns argument parsing and exit codes: every CairnError of every subcommand ends here, as one
line on stderr and its exit code. The work happens in launch, tui, headless and demo.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from cairn_client.agent_cli import agent_app
from cairn_client.conversations_cli import conversations_app
from cairn_client.errors import CairnError, ExitCode, UsageError
from cairn_client.mcp_cli import mcp_app
from cairn_client.memory_cli import context_command, memory_app
from cairn_client.runs_cli import runs_app

PICK = ""  # the value of a bare `--resume`: pick the conversation in the TUI
FIRST_MESSAGE = "--first-message"  # what `cairn "REQUEST"` becomes (hidden)
# The top command's options that take a value (the words after them are not a REQUEST).
VALUE_OPTIONS = frozenset({"-p", "--print", "--resume", "--approve", "--model", FIRST_MESSAGE})
PRINT_OPTIONS = frozenset({"-p", "--print"})

if TYPE_CHECKING:  # `cairn --help` and `--version` import none of the work's modules
    from cairn_client.policy.types import ApproveMode

ApproveOption = Annotated[
    str | None,
    typer.Option(
        metavar="MODE", help="What runs without asking: none, edits or all (default: settings)."
    ),
]


class CairnCommand(TyperGroup):
    """The root command: a CairnError from any subcommand becomes `cairn: <message>` on
    stderr and the error's exit code (errors.ExitCode), never a traceback; Ctrl-C ends with 1
    (not finished), as an interrupted run does."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context type is private
        try:
            return super().invoke(ctx)
        except CairnError as exc:
            typer.echo(f"cairn: {exc.message}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.FAILED) from None


app = typer.Typer(
    cls=CairnCommand,
    rich_markup_mode=None,  # plain help: no <bool>/<str> type column
    help="Cairn: a stateful coding agent for this repository.\n\n"
    '`cairn "REQUEST"` opens the TUI with REQUEST sent as the first message (a REQUEST that '
    "is exactly a command's name runs that command; `cairn -- memory` sends it).",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(memory_app, name="memory")
app.add_typer(runs_app, name="runs")
app.add_typer(conversations_app, name="conversations")
app.add_typer(agent_app, name="agent")
app.add_typer(mcp_app, name="mcp")
patch_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no <bool>/<str> type column
    help="Apply unified diffs to the workspace the way the apply_patch tool does.",
    no_args_is_help=True,
)
app.add_typer(patch_app, name="patch")
app.command("context")(context_command)


@app.callback(invoke_without_command=True)
def main_command(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Option(
            "-p",
            "--print",
            metavar="REQUEST",
            help="Run one request headless and print the answer.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="With -p: one JSON event per line.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--continue", "-c", help="Continue the conversation with the latest activity."
        ),
    ] = False,
    resume_id: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="[ID]",
            help="Continue conversation ID (see `cairn conversations list`); without ID, "
            "pick one in the TUI.",
        ),
    ] = None,
    approve: ApproveOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The agent's model from now on, kept for the next cairn (e.g. "
            "openai/gpt-5.4-mini; default: the server's).",
        ),
    ] = None,
    first_message: Annotated[
        str | None, typer.Option(FIRST_MESSAGE, hidden=True, metavar="REQUEST")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", "-V", help="Print Cairn's version and exit.")
    ] = False,
) -> None:
    if version:
        from cairn_client.entry import version as installed_version

        typer.echo(f"cairn {installed_version()}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is not None:
        return
    if resume and resume_id is not None:
        raise UsageError("use either --continue or --resume, not both")
    if prompt is not None and resume_id == PICK:
        raise UsageError("with -p, --resume needs a conversation id (or use -c for the latest)")
    if prompt is not None and first_message is not None:
        raise UsageError(
            f"use either -p REQUEST or a REQUEST for the TUI, not both: {first_message!r}"
        )

    from cairn_client.config import ClientSettings
    from cairn_client.launch import choose_model_now, prepare_launch, run_blocking_headless, say

    launch = prepare_launch(
        Path.cwd(),
        settings=ClientSettings.from_env(),
        approve=_approve_mode(approve),
        notify=say if prompt is not None else None,  # the TUI shows them as it opens
    )
    if model is not None:
        choose_model_now(launch, model)
    if prompt is not None:
        raise typer.Exit(
            run_blocking_headless(
                launch, prompt, as_json=json_output, resume=resume, conversation=resume_id
            )
        )
    from cairn_client.tui.run import run_tui

    conversation = "latest" if resume else resume_id or "reopen"
    chosen = run_tui(
        launch,
        conversation=conversation,
        pick_conversation=resume_id == PICK,
        first_message=first_message or "",
    )
    if chosen == "demo":
        from cairn_client.demo import run_demo

        raise typer.Exit(run_demo())


@app.command()
def demo() -> None:
    """A sample repository, the real server and TUI, and a scripted model: no key needed."""
    from cairn_client.demo import run_demo

    raise typer.Exit(run_demo())


@app.command()
def ticket(
    source: Annotated[
        str | None,
        typer.Argument(
            help="A Markdown/text file, - for stdin, owner/repo#N or its URL, or a Linear key "
            "(ENG-42). With --resume: which ticket (its slug or branch) to continue."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted ticket.")
    ] = False,
    worktree: Annotated[
        bool, typer.Option("--worktree", help="Work in a new git worktree, not a branch here.")
    ] = False,
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Start even with uncommitted changes.")
    ] = False,
    patch_out: Annotated[
        Path | None, typer.Option("--patch-out", help="Also write the commit as a patch file.")
    ] = None,
    pull_request: Annotated[
        bool, typer.Option("--pr", help="Push the branch and open a GitHub pull request.")
    ] = False,
    approve: ApproveOption = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="No TUI (the default without a terminal).")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Headless: print the result as JSON on stdout.")
    ] = False,
) -> None:
    """Turn a ticket into an approved patch: a branch, a reviewed plan, edits, one commit.

    Exit 0: a patch was committed; 1: the run ended without one; 2: it could not start.
    """
    from cairn_client.ticket.command import TicketRequest, TicketRun, run_ticket

    def run_in_tui(ticket: TicketRun) -> int:
        from cairn_client.tui.ticket import run_ticket_tui

        return run_ticket_tui(ticket)

    request = TicketRequest(
        source=None if resume else source,
        resume=resume,
        resume_slug=source if resume else None,
        worktree=worktree,
        allow_dirty=allow_dirty,
        patch_out=patch_out.resolve() if patch_out else None,
        pull_request=pull_request,
        approve=_approve_mode(approve),
        headless=headless or json_output or not (sys.stdin.isatty() and sys.stdout.isatty()),
        as_json=json_output,
    )
    from cairn_client.config import ClientSettings

    raise typer.Exit(run_ticket(Path.cwd(), request, ClientSettings.from_env(), run_in_tui))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def server(ctx: typer.Context) -> None:
    """`status`, `stop`: the local server `cairn` keeps up; else as `cairn-server` (--help)."""
    if ctx.args in (["status"], ["stop"]):
        from cairn_client.config import ClientSettings
        from cairn_client.local_server import status_lines, stop_local_server

        data_dir = ClientSettings.from_env().data_dir
        lines = status_lines(data_dir) if ctx.args == ["status"] else [stop_local_server(data_dir)]
        typer.echo("\n".join(lines))
        return
    from cairn_client.embedded import require_server

    require_server("`cairn server`")
    from cairn_server.cli import app as server_app

    server_app(args=ctx.args, prog_name="cairn server")


@patch_app.command("apply")
def patch_apply(
    file: Annotated[str, typer.Argument(help="The diff to apply, or - for standard input.")],
    check: Annotated[
        bool, typer.Option("--check", help="Only tell whether it applies; write nothing.")
    ] = False,
) -> None:
    """Apply a diff, every file or none; hunks are found by their content.

    Exit 0: applied (or applies, with --check); 1: refused, with a reason per hunk;
    2: the diff could not be read.
    """
    from cairn_client.config import ClientSettings
    from cairn_client.tools.changes import apply_changes, patch_changes
    from cairn_client.tools.paths import ToolError
    from cairn_client.workspace import detect_workspace

    try:
        patch = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {file}: {exc}") from None
    root = detect_workspace(Path.cwd(), environ=ClientSettings.from_env().process_env).root
    try:
        changes = patch_changes(root, patch)
        if not check:
            apply_changes(root, changes)
    except (ToolError, OSError) as exc:
        typer.echo("cairn: the patch was not applied; nothing was changed:", err=True)
        for line in str(exc).splitlines():
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(1) from None
    for change in changes:
        typer.echo(_change_summary(change.path, change.before, change.after, check))


def _change_summary(path: str, before: str | None, after: str | None, check: bool) -> str:
    import difflib

    verb = "create" if before is None else "delete" if after is None else "edit"
    done = (
        f"would {verb}" if check else {"create": "created", "delete": "deleted"}.get(verb, "edited")
    )
    diff = difflib.unified_diff(
        (before or "").splitlines(), (after or "").splitlines(), lineterm="", n=0
    )
    added = removed = 0
    for line in diff:
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return f"{done} {path} (+{added} -{removed})"


def _approve_mode(value: str | None) -> ApproveMode | None:
    if value is None:
        return None
    if value not in ("none", "edits", "all"):
        raise UsageError(f"--approve must be none, edits or all, not {value!r}")
    return value  # type: ignore[return-value]


def main() -> None:
    app(args=with_first_message(with_resume_value(sys.argv[1:])), prog_name="cairn")


def with_first_message(args: list[str]) -> list[str]:
    """`cairn "fix the bug"` (no -p): the words that name no subcommand become the TUI's
    first message (the hidden FIRST_MESSAGE option); a subcommand's name runs it. A `-p`
    followed by another option is a flag, as in `claude -p`: `cairn -p --json "fix it"`."""
    at, print_flag = 0, None
    while at < len(args):
        arg = args[at]
        if arg == "--":
            at += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg in PRINT_OPTIONS and _an_option(args[at + 1 : at + 2]):
            print_flag = at
            at += 1
            continue
        at += 2 if arg in VALUE_OPTIONS else 1
    words = args[at:]
    before = args[: at - 1] if args[at - 1 : at] == ["--"] else args[:at]
    if print_flag is not None:
        if not words:
            return args  # typer says -p wants a request
        return [*(a for i, a in enumerate(before) if i != print_flag), "-p", " ".join(words)]
    if not words or (args[at - 1 : at] != ["--"] and words[0] in _subcommands()):
        return args
    return [*before, FIRST_MESSAGE, " ".join(words)]


def _an_option(following: list[str]) -> bool:
    return bool(following) and following[0].startswith("-") and following[0] != "-"


def with_resume_value(args: list[str]) -> list[str]:
    """`cairn --resume` may come without its ID (typer options always take a value): a bare
    `--resume` of the top-level command gets PICK. Subcommands' own --resume is left alone."""
    if "--resume" not in args or any(arg in _subcommands() for arg in args):
        return args
    at = args.index("--resume")
    if at + 1 < len(args) and not args[at + 1].startswith("-"):
        return args
    return [*args[: at + 1], PICK, *args[at + 1 :]]


def _subcommands() -> set[str]:
    names = {group.name for group in app.registered_groups if group.name}
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else None)
        if name:
            names.add(name)
    return names


if __name__ == "__main__":
    main()
