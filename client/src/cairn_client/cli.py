"""The `cairn` command: the TUI by default, `-p` for headless, `demo`, `server`.

Owns argument parsing and exit codes; the work happens in launch, tui, headless and demo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cairn_client.launch import LaunchError, prepare_launch, run_blocking_headless
from cairn_client.memory_cli import context_command, memory_app
from cairn_client.policy.settings import SettingsError
from cairn_client.policy.types import ApproveMode

app = typer.Typer(
    help="Cairn: a stateful coding agent for this repository.",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(memory_app, name="memory")
app.command("context")(context_command)


@app.callback(invoke_without_command=True)
def main_command(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Option("-p", "--print", help="Run one request headless and print the answer."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="With -p: one JSON event per line.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--continue", "-c", help="With -p: continue the latest conversation.")
    ] = False,
    approve: Annotated[
        str | None,
        typer.Option(help="What runs without asking: none, edits or all (default: settings)."),
    ] = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    mode = _approve_mode(approve)
    try:
        launch = prepare_launch(Path.cwd(), approve=mode)
    except (LaunchError, SettingsError) as exc:
        typer.echo(f"cairn: {exc}", err=True)
        raise typer.Exit(2) from None
    if prompt is not None:
        raise typer.Exit(run_blocking_headless(launch, prompt, as_json=json_output, resume=resume))
    from cairn_client.tui.run import run_tui

    if run_tui(launch) == "demo":
        from cairn_client.demo import run_demo

        raise typer.Exit(run_demo())


@app.command()
def demo() -> None:
    """A sample repository, the real server and TUI, and a scripted model: no key needed."""
    from cairn_client.demo import run_demo

    raise typer.Exit(run_demo())


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def server(ctx: typer.Context) -> None:
    """Run the Cairn server (same as `cairn-server`; try `cairn server --help`)."""
    try:
        from cairn_server.cli import app as server_app
    except ImportError:
        typer.echo("cairn: cairn-server is not installed here", err=True)
        raise typer.Exit(2) from None
    server_app(args=ctx.args, prog_name="cairn server")


def _approve_mode(value: str | None) -> ApproveMode | None:
    if value is None:
        return None
    if value not in ("none", "edits", "all"):
        typer.echo(f"cairn: --approve must be none, edits or all, not {value!r}", err=True)
        raise typer.Exit(2)
    return value  # type: ignore[return-value]


def main() -> None:
    app(prog_name="cairn")


if __name__ == "__main__":
    main()
