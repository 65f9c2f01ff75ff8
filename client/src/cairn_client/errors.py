"""The root of every error the client raises on purpose, and the tree below it.

Owns `CairnError`: a one-line `message` for a person and the `exit_code` the `cairn` command
ends with. Each error is defined beside the code that raises it and derives from this root
(and from the builtin it always was); the command catches the root in one place (cli.py) and
prints `cairn: <message>` on stderr. Exit codes: 1 a failure (the server said no, a run or a
tool failed), 2 a usage error (arguments, settings, what is installed).

    CairnError
    ├── UsageError .............. here (exit 2: arguments, a missing ticket)
    ├── ClientSettingsError ..... config  (exit 2: an environment variable cannot be used)
    ├── ServerNotInstalled ...... embedded  (exit 2: the client was installed alone)
    ├── LaunchError ............. launch  (exit 2: configuration that cannot work)
    ├── SettingsError ........... policy.settings  (exit 2: a settings file cannot be used)
    ├── ApiError ................ api  (exit 1: a REST request failed; `status` is HTTP's)
    ├── EmbeddedServerError ..... embedded  (exit 1: the local server did not start)
    ├── SessionFailed ........... session  (exit 1: the server refused the session)
    ├── NotConnected ............ session
    ├── RunRefused .............. listener  (the server would not start a run)
    ├── UndoRefused ............. undo
    ├── ToolError ............... tools.paths  (the message is for the model)
    │   ├── PathOutsideWorkspace, SpecialFile
    │   └── StaleChange ......... tools.changes
    ├── TicketError ............. ticket.sources  (exit 2)
    ├── GitError ................ ticket.git  (exit 2)
    └── StateError .............. ticket.state  (exit 2)
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CairnError(Exception):
    """Something Cairn refuses or cannot do, said in one line; `exit_code` ends the command."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        """The message on one line (a message that wrapped is joined with spaces)."""
        return " ".join(str(self).split())


class UsageError(CairnError):
    """The command cannot start as asked: bad arguments, or nothing to work on."""

    exit_code = EXIT_USAGE
