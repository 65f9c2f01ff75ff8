"""`cairn "REQUEST"`: words that name no subcommand become the TUI's first message (a hidden
option, since a typer group would take them for a command); subcommands keep their names."""

from __future__ import annotations

import typer
from cairn_client.cli import FIRST_MESSAGE, VALUE_OPTIONS, app, with_first_message


def test_a_request_becomes_the_first_message_and_a_subcommand_stays_one() -> None:
    assert with_first_message(["fix the bug"]) == [FIRST_MESSAGE, "fix the bug"]
    assert with_first_message(["fix", "the", "bug"]) == [FIRST_MESSAGE, "fix the bug"]
    assert with_first_message(["memory", "list"]) == ["memory", "list"]
    assert with_first_message(["runs"]) == ["runs"]
    assert with_first_message(["--", "memory"]) == [FIRST_MESSAGE, "memory"]
    assert with_first_message(["-c"]) == ["-c"]
    assert with_first_message(["-p", "hi"]) == ["-p", "hi"]


def test_p_followed_by_an_option_is_a_flag_and_the_words_its_request() -> None:
    assert with_first_message(["-p", "--json", "fix", "it"]) == ["--json", "-p", "fix it"]
    assert with_first_message(["--print", "--model", "openai/x", "go"]) == [
        "--model",
        "openai/x",
        "-p",
        "go",
    ]
    assert with_first_message(["-p", "--json", "memory"]) == ["--json", "-p", "memory"]
    assert with_first_message(["-p", "--json"]) == ["-p", "--json"]  # typer: -p needs a value
    assert with_first_message(["--json", "-p", "hi"]) == ["--json", "-p", "hi"]


def test_option_values_are_not_taken_for_a_request() -> None:
    assert with_first_message(["--model", "openai/x", "go on"]) == [
        "--model",
        "openai/x",
        FIRST_MESSAGE,
        "go on",
    ]
    assert with_first_message(["--approve", "edits", "-c", "fix it"]) == [
        "--approve",
        "edits",
        "-c",
        FIRST_MESSAGE,
        "fix it",
    ]
    assert with_first_message(["--model=openai/x", "hi"]) == [
        "--model=openai/x",
        FIRST_MESSAGE,
        "hi",
    ]


def test_the_options_taking_a_value_are_the_commands_own() -> None:
    command = typer.main.get_command(app)
    taking = {
        name
        for param in command.params
        if param.param_type_name == "option" and not getattr(param, "is_flag", False)
        for name in param.opts
    }
    assert taking == VALUE_OPTIONS
