"""`cairn --resume [ID]`: typer options always take a value, so a bare `--resume` of the
top-level command is given the "pick one" value before parsing; subcommands keep their own.
"""

from __future__ import annotations

from cairn_client.cli import PICK, with_resume_value


def test_a_bare_resume_means_pick_and_an_id_is_kept() -> None:
    assert with_resume_value(["--resume"]) == ["--resume", PICK]
    assert with_resume_value(["--resume", "-p", "hi"]) == ["--resume", PICK, "-p", "hi"]
    assert with_resume_value(["--resume", "cnv_1"]) == ["--resume", "cnv_1"]
    assert with_resume_value(["-p", "hi", "-c"]) == ["-p", "hi", "-c"]


def test_a_subcommands_own_resume_is_left_alone() -> None:
    assert with_resume_value(["ticket", "--resume"]) == ["ticket", "--resume"]
    assert with_resume_value(["ticket", "--resume", "--headless"]) == [
        "ticket",
        "--resume",
        "--headless",
    ]
