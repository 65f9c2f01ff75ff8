"""The `cairn-server` command: serve the API, create, list and revoke tokens, run migrations.

Owns process start-up (uvicorn on a socket it binds itself, so port 0 works). Exit codes as
`cairn`'s (README, Exit codes): 2 a bad setting or argument (an unknown token), 1 a failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn
from fastapi import FastAPI

from cairn_server.api.activity import Activity
from cairn_server.api.app import create_app
from cairn_server.api.background import bind_listening
from cairn_server.config import ServerSettings, SettingsError
from cairn_server.runtime.runtime import Runtime
from cairn_server.storage.db import open_database
from cairn_server.storage.models import ApiToken
from cairn_server.storage.repository import NotFoundError
from cairn_server.storage.store import Store

T = TypeVar("T")

app = typer.Typer(
    help="Cairn server: the agent runtime behind `cairn`.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: no <bool>/<str> type column
)

DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="Default: CAIRN_DATABASE_URL or a SQLite file.")
]


def _settings(database_url: str | None) -> ServerSettings:
    """The environment's settings, or a one-line error and exit code 2."""
    try:
        return ServerSettings.from_env(database_url=database_url)
    except SettingsError as exc:
        typer.echo(f"cairn-server: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default 127.0.0.1 (CAIRN_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Default 8765 (CAIRN_PORT); 0 = any.")] = None,
    database_url: DatabaseOption = None,
    announce: Annotated[
        bool, typer.Option(help='Print {"port": N} on stdout once listening (for embedding).')
    ] = False,
    exit_with_parent: Annotated[
        int | None, typer.Option(help="Stop when the process with this pid is gone.")
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(help='A file naming this server ({"pid": N, ...}); removed when it stops.'),
    ] = None,
    log_level: str = "warning",
) -> None:
    """Serve the websocket and REST API (CAIRN_IDLE_EXIT_S: stop after that long unused)."""
    settings = _settings(database_url)
    bind_host = host or settings.host
    sock = bind_listening(bind_host, settings.port if port is None else port)
    bound_port = sock.getsockname()[1]
    app = create_app(settings)
    config = uvicorn.Config(app, log_level=log_level, ws_ping_interval=20, ws_ping_timeout=20)
    server = uvicorn.Server(config)
    if exit_with_parent is not None:
        _watch_parent(server, exit_with_parent)
    if settings.idle_exit_s is not None:
        _exit_when_idle(server, app, settings.idle_exit_s)
    if announce:
        _announce_when_started(server, bound_port)
    else:
        typer.echo(f"cairn-server listening on http://{bind_host}:{bound_port}", err=True)
    try:
        server.run(sockets=[sock])
    finally:
        if state_file is not None:
            _forget_state(state_file)


def _exit_when_idle(server: uvicorn.Server, app: FastAPI, idle_s: float) -> None:
    """Stop once no connection has been open and no run or reflection going for `idle_s`
    seconds."""
    activity: Activity = app.state.activity

    def watch() -> None:
        while not server.should_exit:
            time.sleep(min(1.0, idle_s / 4))
            runtime: Runtime | None = getattr(app.state, "runtime", None)
            if runtime is not None and runtime.busy:
                activity.busy()
            elif activity.quiet_for() >= idle_s:
                logging.getLogger("cairn_server").warning(
                    "cairn-server: unused for %ss, stopping", f"{idle_s:g}"
                )
                server.should_exit = True

    threading.Thread(target=watch, daemon=True, name="idle-exit").start()


def _forget_state(path: Path) -> None:
    """Remove the state file a client keeps about this server, if it still names this one."""
    try:
        named = json.loads(path.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return
    if named == os.getpid():
        path.unlink(missing_ok=True)


def _watch_parent(server: uvicorn.Server, parent_pid: int) -> None:
    """An embedded server must not outlive the `cairn` that started it, even if killed."""

    def watch() -> None:
        while not server.should_exit:
            if os.getppid() != parent_pid:
                server.should_exit = True
                return
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _announce_when_started(server: uvicorn.Server, port: int) -> None:
    original_startup = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original_startup(sockets=sockets)
        if server.started:
            sys.stdout.write(json.dumps({"port": port}) + "\n")
            sys.stdout.flush()

    server.startup = startup  # type: ignore[method-assign]


@app.command("create-token")
def create_token(
    user: Annotated[str, typer.Argument(help="User name; created if new.")],
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    expires_in: Annotated[
        str | None,
        typer.Option(help="Refuse the token after this long: 90m, 12h, 30d or 8w. Default: never."),
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create an API token for USER and print it (it is shown only once)."""
    settings = _settings(database_url)
    lifetime = None
    if expires_in is not None:
        try:
            lifetime = parse_duration(expires_in)
        except ValueError as exc:
            typer.echo(f"cairn-server: --expires-in: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(_with_store(settings, lambda store: store.create_token(user, label, lifetime)))


tokens_app = typer.Typer(
    help="List and revoke API tokens.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("list")
def list_tokens(
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Every token (never its secret): id, user, label, status, created, last used."""
    settings = _settings(database_url)
    rows = _with_store(settings, lambda store: store.list_tokens(user))
    now = datetime.now(UTC)
    table = [("ID", "USER", "LABEL", "STATUS", "CREATED", "LAST USED")]
    for token, owner in rows:
        table.append(
            (
                token.id,
                owner.name,
                token.label or "-",
                _token_status(token, now),
                _day(token.created_at),
                _day(token.last_used_at) if token.last_used_at else "never",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@tokens_app.command("revoke")
def revoke_token(
    token: Annotated[
        str, typer.Argument(help="The token's id (tok_…, see `tokens list`) or value.")
    ],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a token: from now on the server refuses it (websocket and REST)."""
    settings = _settings(database_url)
    try:
        revoked = _with_store(settings, lambda store: store.revoke_token(token))
    except NotFoundError as exc:  # a wrong argument: 2, as `cairn` says of an unknown id
        typer.echo(f"cairn-server: {exc}", err=True)
        raise typer.Exit(2) from None
    assert revoked.revoked_at is not None
    typer.echo(
        f"revoked {revoked.id} ({revoked.label or 'no label'}) on {_day(revoked.revoked_at)}"
    )


_DURATION = re.compile(r"(\d{1,6})([mhdw])")
_UNIT = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_LIFETIME = timedelta(days=36_500)


def parse_duration(text: str) -> timedelta:
    """`90m`, `12h`, `30d`, `8w` as a timedelta; ValueError saying what is expected."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90m, 12h, 30d or 8w")
    lifetime = timedelta(**{_UNIT[match.group(2)]: int(match.group(1))})
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError(f"{text!r} is out of range: more than 0 and at most 36500d")
    return lifetime


def _token_status(token: ApiToken, now: datetime) -> str:
    """`active`, `expires <when>`, `expired <when>` or `revoked <when>` (UTC)."""
    state = token.state(now)
    when = token.revoked_at if state == "revoked" else token.expires_at
    if when is None:
        return state
    return f"{'expires' if state == 'active' else state} {_day(when)}"


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _with_store(settings: ServerSettings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run one store call on the configured database, migrated first."""

    async def run() -> T:
        database = await open_database(settings.database_url, settings.database_pool_size)
        try:
            return await work(Store(database))
        finally:
            await database.close()

    return asyncio.run(run())


@app.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Bring the database schema up to date (serve does this too)."""
    settings = _settings(database_url)

    async def run() -> None:
        database = await open_database(settings.database_url, settings.database_pool_size)
        await database.close()

    asyncio.run(run())
    typer.echo("database is up to date")


OPENAPI_FILE = Path("docs/api/openapi.json")


def render_openapi() -> str:
    """The REST API's OpenAPI document, as FastAPI generates it, in a stable form."""
    document = create_app(ServerSettings(database_url="sqlite://")).openapi()
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@app.command()
def openapi(
    out: Annotated[Path, typer.Option(help="Where to write the document.")] = OPENAPI_FILE,
    check: Annotated[bool, typer.Option(help="Fail if the file is not up to date.")] = False,
) -> None:
    """Write the REST API's OpenAPI document into docs/ (or check it is current)."""
    document = render_openapi()
    if check:
        if not out.exists() or out.read_text() != document:
            typer.echo(f"{out} is stale: run `uv run cairn-server openapi`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document)
    typer.echo(f"wrote {out}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":
    main()
