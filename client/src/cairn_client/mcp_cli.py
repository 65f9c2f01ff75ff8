"""`cairn mcp ...`: the MCP servers this repository's sessions start, and trusting a
repository's servers once.

Owns those commands' output; the configuration and the trust record are mcp/config.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # the configuration is read only when a command runs
    from cairn_client.mcp.config import McpSetup

mcp_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no <bool>/<str> type column
    help="The MCP servers Cairn starts here: yours ([mcp.servers.NAME] in your settings.toml) "
    "and this repository's (.cairn/settings.toml, started only once you trust them).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@mcp_app.command("list")
def list_command() -> None:
    """Each configured server, where it is configured, its command, and whether it starts."""
    setup, _ = _setup_here()
    if not setup.servers and not setup.untrusted:
        typer.echo("no MCP servers configured (see docs/mcp.md)")
        return
    for server in setup.servers:
        typer.echo(f"{server.name}\tstarts\t{server.source}\t{server.describe()}")
    for server in setup.untrusted:
        typer.echo(f"{server.name}\tnot trusted\t{server.source}\t{server.describe()}")
    note = setup.untrusted_note()
    if note is not None:
        typer.echo(note, err=True)


@mcp_app.command("trust")
def trust_command(
    yes: bool = typer.Option(False, "--yes", "-y", help="Trust without asking."),
) -> None:
    """Show the servers this repository's .cairn/settings.toml would start, and trust them.

    The trust is kept in your data folder under the configuration's content hash: if the
    repository changes a command, an argument or a variable, it must be trusted again."""
    from cairn_client.mcp.config import trust

    setup, (root, data_dir) = _setup_here()
    if not setup.untrusted or setup.repo_hash is None:
        typer.echo("nothing to trust: this repository starts no MCP server you have not trusted")
        return
    for server in setup.untrusted:
        env = ", ".join(name for name, _ in server.env)
        typer.echo(f"{server.name}: {server.describe()}" + (f" (env: {env})" if env else ""))
    if not yes and not typer.confirm("These run on your machine as you, unsandboxed. Trust them?"):
        raise typer.Exit(1)
    trust(data_dir, setup.repo_hash, root)
    typer.echo(f"trusted {len(setup.untrusted)} MCP server(s) of {root}")


def _setup_here() -> tuple[McpSetup, tuple[Path, Path]]:
    from cairn_client.config import ClientSettings
    from cairn_client.mcp.config import load_mcp_setup
    from cairn_client.workspace import detect_workspace

    settings = ClientSettings.from_env()
    root = detect_workspace(Path.cwd(), environ=settings.process_env).root
    return load_mcp_setup(root, settings.data_dir), (root, settings.data_dir)
