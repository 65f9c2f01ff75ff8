"""The HTTP headers of an agent's MCP servers at rest: sealed with the server's key, `${NAME}`
references resolved from the server's environment when it connects, masks for REST.

Owns the server's key (CAIRN_SECRET_KEY, else a 0600 key file made on first use beside the
SQLite database or in the user's data folder), sealing each value before it is stored and
opening it again (a wrong key is one clear line, never a crash), and what REST shows instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import platformdirs
from cryptography.fernet import Fernet, InvalidToken

from cairn_server.errors import CairnServerError

SEALED = "sealed:v1:"  # a stored value's prefix: Fernet's token follows
KEY_FILE_NAME = "secret.key"
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MASK = "***"  # stands for stored text REST never shows


class HeaderKeyError(CairnServerError):
    """The server's key cannot seal or open MCP headers: unreadable, malformed, or not the
    key they were sealed with."""


class HeaderReferenceError(CairnServerError, ValueError):
    """A header names `${NAME}` and the server's environment has no such variable."""


def default_key_file(database_url: str | None) -> Path:
    """Where the key is kept without CAIRN_SECRET_KEY: beside a SQLite database file, else
    in the user's data folder (as the default database)."""
    _, found, path = (database_url or "").partition(":///")
    if database_url and database_url.startswith("sqlite") and found and path != ":memory:":
        return Path(path).parent / KEY_FILE_NAME
    return Path(platformdirs.user_data_dir("cairn")) / KEY_FILE_NAME


class ServerKey:
    """The key MCP headers are sealed with, read (or the file made) once, when first needed."""

    def __init__(self, configured: str | None, key_file: Path) -> None:
        self._configured = configured
        self.key_file = key_file
        self._fernet: Fernet | None = None

    @property
    def where(self) -> str:
        """How a message names the key."""
        return "CAIRN_SECRET_KEY" if self._configured else f"the key file {self.key_file}"

    def fernet(self) -> Fernet:
        if self._fernet is None:
            key = self._configured or self._from_file()
            try:
                self._fernet = Fernet(key.strip().encode())
            except ValueError:
                raise HeaderKeyError(
                    f"{self.where} is not a key: it must be 32 url-safe base64-encoded bytes "
                    "(make one with `python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`)"
                ) from None
        return self._fernet

    def _from_file(self) -> str:
        """The key file's key, made (0600) when there is none yet."""
        try:
            return self.key_file.read_text(encoding="ascii")
        except FileNotFoundError:
            pass
        except (OSError, UnicodeError) as exc:
            raise HeaderKeyError(f"cannot read {self.where}: {exc}") from None
        key = Fernet.generate_key()
        try:
            self.key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it just now: use theirs
            return self.key_file.read_text(encoding="ascii")
        except OSError as exc:
            raise HeaderKeyError(f"cannot create {self.where}: {exc}") from None
        with os.fdopen(descriptor, "wb") as file:
            file.write(key + b"\n")
        return key.decode()


class McpHeaders:
    """Sealing, opening and resolving the headers an agent's MCP servers are sent."""

    def __init__(self, key: ServerKey, environ: Mapping[str, str]) -> None:
        self.key = key
        self._environ = environ

    def seal(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The values as stored: each sealed; HeaderReferenceError when one names a variable
        the server's environment lacks (said now, not at the first call)."""
        for name, value in headers.items():
            self._resolved(name, value)
        fernet = self.key.fernet()
        return {name: _sealed(fernet, value) for name, value in headers.items()}

    def resolve(self, server: str, stored: Mapping[str, str]) -> dict[str, str]:
        """What is sent to the MCP server `server`: each value opened, its references
        replaced; HeaderKeyError or HeaderReferenceError, naming the server, when it cannot."""
        opened = self.open(server, stored)
        try:
            return {name: self._resolved(name, value) for name, value in opened.items()}
        except HeaderReferenceError as exc:
            raise HeaderReferenceError(f"MCP server {server}: {exc}") from None

    def seal_opened(self, server: str, stored: Mapping[str, str]) -> dict[str, str]:
        """The stored values, each sealed: those stored in clear before sealing existed too."""
        opened = self.open(server, stored)
        fernet = self.key.fernet()
        return {name: _sealed(fernet, value) for name, value in opened.items()}

    def masks(self, server: str, stored: Mapping[str, str]) -> dict[str, str]:
        """What REST shows of each value: its `${NAME}` references, every other text as ***."""
        try:
            opened = self.open(server, stored)
        except HeaderKeyError:
            return {name: MASK for name in stored}
        return {name: masked(value) for name, value in opened.items()}

    def open(self, server: str, stored: Mapping[str, str]) -> dict[str, str]:
        """The values as configured; one stored before sealing existed is taken as it is."""
        if not any(value.startswith(SEALED) for value in stored.values()):
            return dict(stored)
        fernet = self.key.fernet()
        try:
            return {name: _opened(fernet, value) for name, value in stored.items()}
        except InvalidToken:
            raise HeaderKeyError(
                f"MCP server {server}: its headers were sealed with another key than "
                f"{self.key.where}, so they cannot be read; restore that key, or enter the "
                "headers again (PUT the server)"
            ) from None

    def _resolved(self, name: str, value: str) -> str:
        def variable(match: re.Match[str]) -> str:
            found = self._environ.get(match.group(1))
            if found is None:
                raise HeaderReferenceError(
                    f"header {name} names ${{{match.group(1)}}}, which is not set in the "
                    "server's environment"
                )
            return found

        return REFERENCE.sub(variable, value)


def masked(value: str) -> str:
    """`Bearer ${TOKEN}` → `***${TOKEN}`: only the references, which hold no secret, shown."""
    parts = REFERENCE.split(value)  # text, name, text, name, …, text
    shown = [
        f"${{{part}}}" if index % 2 else (MASK if part else "") for index, part in enumerate(parts)
    ]
    return "".join(shown)


def _sealed(fernet: Fernet, value: str) -> str:
    return SEALED + fernet.encrypt(value.encode()).decode()


def _opened(fernet: Fernet, value: str) -> str:
    if not value.startswith(SEALED):
        return value
    return fernet.decrypt(value.removeprefix(SEALED).encode()).decode()
