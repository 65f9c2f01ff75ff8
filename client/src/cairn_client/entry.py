"""The `cairn` executable's entry point: `cairn --version` answers before anything is imported.

Everything else goes to `cli` (typer and the commands, each loading its work when it runs).
"""

from __future__ import annotations

import sys


def version() -> str:
    """The installed cairn-client's version."""
    from cairn_client import __version__

    return __version__


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        print(f"cairn {version()}")
        return
    from cairn_client.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
