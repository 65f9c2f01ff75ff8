"""The root of every error the client raises on purpose, its tree, and the `cairn` exit codes.

Owns `CairnError`: a one-line `message` for a person and the `exit_code` the `cairn` command
ends with. Each error is defined beside the code that raises it and derives from this root
(and from the builtin it always was); the command catches the root in one place (cli.py) and
prints `cairn: <message>` on stderr. Every command ends with one of `ExitCode` (README,
"Exit codes"): 0 done, 1 the agent did not finish or the server refused the request, 2 usage
or configuration (including a server that cannot be reached), 3 the model or authentication.

    CairnError
    ├── UsageError .............. here (2: arguments, a missing ticket)
    ├── ClientSettingsError ..... config  (2: an environment variable cannot be used)
    ├── ServerNotInstalled ...... embedded  (2: the client was installed alone)
    ├── LaunchError ............. launch  (2: configuration that cannot work)
    ├── SettingsError ........... policy.settings  (2: a settings file cannot be used)
    ├── ApiError ................ api  (by HTTP status: `api.exit_code_for_status`)
    ├── EmbeddedServerError ..... embedded  (2: the local server did not start)
    ├── SessionFailed ........... session  (2 never reached, 3 token refused, 1 lost)
    ├── NotConnected ............ session
    ├── RunRefused .............. listener  (the server would not start a run)
    ├── UndoRefused ............. undo
    ├── ToolError ............... tools.paths  (the message is for the model)
    │   ├── PathOutsideWorkspace, SpecialFile
    │   └── StaleChange ......... tools.changes
    ├── TicketError ............. ticket.sources  (2)
    ├── GitError ................ ticket.git  (2)
    └── StateError .............. ticket.state  (2)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """How every `cairn` command ends; the same numbers in every subcommand."""

    OK = 0  # answered, done
    FAILED = 1  # the agent did not finish (a limit, an interruption), or a request was refused
    USAGE = 2  # arguments, settings, no usable model, a server that cannot be reached
    MODEL = 3  # the model failed (after retries, or refused the key), or Cairn's token was refused


def exit_code_for_stop(stop_reason: str) -> ExitCode:
    """The exit code of a run that ended with `stop_reason` (a RunFinished's): only a normal
    end of turn is 0, a model error is 3, every other stop (limits, cancel, truncation) 1."""
    if stop_reason == "end_turn":
        return ExitCode.OK
    if stop_reason == "model_error":
        return ExitCode.MODEL
    return ExitCode.FAILED


class CairnError(Exception):
    """Something Cairn refuses or cannot do, said in one line; `exit_code` ends the command."""

    exit_code: int = ExitCode.FAILED

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

    exit_code: int = ExitCode.USAGE
