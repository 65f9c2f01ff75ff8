"""Shell commands as bash reads them: what runs unasked, what rules see, what the sandbox
changes, and the answers the approval screen may offer (issue 12's review findings)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cairn_client.policy.policy import Policy, shell_pieces
from cairn_client.policy.settings import PolicySettings, SettingsError, load_settings
from cairn_client.policy.types import Mode
from cairn_client.tools.base import PreparedCall
from cairn_client.tools.registry import prepare_call
from cairn_client.tools.sandbox import Sandbox, SandboxSettings
from cairn_client.tools.shell_check import inspect_command
from cairn_protocol import ToolRequest

Shell = Callable[..., PreparedCall]
ACTIVE = Sandbox("bubblewrap", environ={})  # decisions only: nothing runs in these tests
MISSING = Sandbox(None, "bubblewrap (bwrap) is not installed", environ={})


@pytest.fixture
def shell(repo: Path) -> Shell:
    (repo / "private").mkdir(exist_ok=True)
    (repo / "private" / "notes.txt").write_text("salary list\n")
    (repo / "bin").mkdir(exist_ok=True)
    os.symlink("/etc/passwd", repo / "passwd-link")

    def prepare(command: str, **arguments: Any) -> PreparedCall:
        request = ToolRequest(
            run_id="r", call_id="c", tool="shell", arguments={"command": command, **arguments}
        )
        return prepare_call(repo, request)

    return prepare


def policy(
    mode: Mode = "default",
    *,
    sandbox: Sandbox = ACTIVE,
    user_file: Path | None = Path("/nonexistent/settings.toml"),
    **rules: list[str],
) -> Policy:
    settings = PolicySettings(mode=mode, user_file=user_file, **rules)  # type: ignore[arg-type]
    return Policy(settings, sandbox=sandbox)


# The review's commands that ran with no prompt in default mode; each must ask now.
REVIEW_UNASKED = [
    "GIT_EXTERNAL_DIFF='touch ../pwned;:' git diff",
    "PATH=./bin:$PATH ls",
    "LESSOPEN='|touch ../pwned; cat %s' less app.py",
    "cat ../outside.txt",
    "cat passwd-link",
    "cat /etc/passwd",
    "git --git-dir=/tmp/other/.git log -p",
    "git diff --no-index /etc/hostname README.md",
    "rg root /etc",
    "uniq a /outside/f",
    "uniq bin/ls .git/hooks/pre-commit",
    "find -fprint0 /outside/f",
    "find . -fprint out.txt",
    "cat /proc/$PPID/environ",
    "cat /proc/self/environ",
    "cat ~/.local/share/cairn/local-token",
    "sort -o README.md README.md",
    "env ls",
    "xargs cat",
    "git -c core.pager=evil log",
    "git log --output=x",
    "less README.md",
    "ls $(touch pwned)",
    "ls `touch pwned`",
    "cat <(touch pwned)",
    "echo hi > out.txt",
    "ls &",
    "ls; touch x",
    "git diff --ext-diff",
    "rg --pre ./bin/x pattern",
    "\\ls -la | tee out",
    "cat 'unterminated",
]


@pytest.mark.parametrize("command", REVIEW_UNASKED)
def test_review_commands_ask_in_default_mode(shell: Shell, command: str) -> None:
    verdict = policy().decide(shell(command))
    assert verdict.decision == "ask", (command, verdict.reason)


@pytest.mark.parametrize(
    "command",
    ["ls -la", "git status", "git diff HEAD~1 | head -50", "rg TODO src", "cat README.md"]
    + ["find . -name '*.py'", "git log --oneline -5", "wc -l README.md", "ls *.md"],
)
def test_plain_reads_run_unasked_in_the_sandbox(shell: Shell, command: str) -> None:
    assert policy().decide(shell(command)).decision == "allow", command


def test_without_a_sandbox_every_shell_command_asks(shell: Shell) -> None:
    for mode in ("default", "bypass"):
        for command in ("ls", "git status", "make test"):
            verdict = policy(mode, sandbox=MISSING, allow=["shell"]).decide(shell(command))
            assert verdict.decision == "ask", (mode, command)
            assert "no sandbox can start (bubblewrap (bwrap) is not installed)" in verdict.reason
            assert verdict.options.session is None and verdict.options.rule is None
    assert policy(sandbox=MISSING, deny=["shell(rm:*)"]).decide(shell("rm x")).decision == "deny"


def test_leaving_the_sandbox_asks_every_time_whatever_the_mode_or_rules(shell: Shell) -> None:
    strong = policy("bypass", allow=["shell", "shell(ls:*)"])
    strong.allow_for_session(shell("ls"))
    verdict = strong.decide(shell("ls", outside_sandbox=True))
    assert verdict.decision == "ask"
    assert "outside the sandbox" in verdict.reason
    assert verdict.options.session is None and verdict.options.rule is None
    assert "no rule can skip it" in verdict.options.no_rule_reason
    assert strong.allow_for_session(shell("make", outside_sandbox=True)) is None
    assert strong.decide(shell("make", outside_sandbox=True)).decision == "ask"
    preview = shell("ls", outside_sandbox=True).preview
    assert "OUTSIDE the sandbox" in preview.title and "outside the sandbox" in preview.warnings[0]


def test_read_rules_on_paths_apply_to_shell(shell: Shell) -> None:
    denying = policy("bypass", deny=["read(private/**)"])
    verdict = denying.decide(shell("cat private/notes.txt"))
    assert verdict.decision == "deny" and "read(private/**)" in verdict.reason
    assert denying.decide(shell("cp private/notes.txt x")).decision == "deny"
    assert denying.decide(shell("cat README.md")).decision == "allow"
    asking = policy(ask=["read(private/**)"])
    assert asking.decide(shell("cat private/notes.txt")).decision == "ask"


@pytest.mark.parametrize(
    "command",
    [
        "rm -rf build",
        "FOO=1 rm -rf build",
        "sudo /bin/rm -rf build",
        "\\rm -rf build",
        "make && rm -rf build",
        "echo $(rm -rf build)",
        "bash -c 'rm -rf build'",
        "sh -xc 'make; rm -rf build'",
        "timeout 5 rm -rf build",
        "env A=1 rm build",
        "find . -name '*.o' | xargs rm",
        "command rm x",
        "eval rm x",
        "if true; then rm x; fi",
    ],
)
def test_deny_rules_see_every_command_the_line_runs(shell: Shell, command: str) -> None:
    verdict = policy("bypass", deny=["shell(rm:*)"]).decide(shell(command))
    assert verdict.decision == "deny", (command, shell_pieces(command))


@pytest.mark.parametrize(
    "command",
    [
        "pytest $(rm -rf ~)",
        "pytest `rm -rf ~`",
        "pytest > /etc/hosts",
        "pytest\nrm -rf ~",
        "pytest; rm -rf ~",
        "pytest & rm -rf ~",
        "pytest <(rm -rf ~)",
        "pytest 'unterminated",
    ],
)
def test_an_allow_rule_never_covers_more_than_one_command(shell: Shell, command: str) -> None:
    assert policy(allow=["shell(pytest:*)"]).decide(shell(command)).decision == "ask", command


def test_the_rule_offered_is_one_the_policy_would_honour(shell: Shell, repo: Path) -> None:
    request = ToolRequest(
        run_id="r",
        call_id="e",
        tool="edit",
        arguments={"path": "README.md", "old_string": "# Demo", "new_string": "# X"},
    )
    edit = prepare_call(repo, request)
    plain = policy().decide(edit)
    assert (plain.options.rule, plain.options.session) == ("edit(README.md)", "edits")
    asking = policy(ask=["edit(README.md)"]).decide(edit)  # an ask rule outranks any allow
    assert asking.decision == "ask" and asking.options.rule is None
    nowhere = policy(user_file=None).decide(edit)
    assert nowhere.options.rule is None and "no settings file" in nowhere.options.no_rule_reason
    assert policy().decide(shell("pytest -q")).options.rule == "shell(pytest:*)"
    assert policy().decide(shell("make && make install")).options.rule is None


def test_network_only_for_the_commands_the_user_names(shell: Shell) -> None:
    settings = PolicySettings(sandbox=SandboxSettings(network_commands=("shell(pip install:*)",)))
    chosen = Policy(settings, sandbox=ACTIVE)
    assert chosen.network_allowed(shell("pip install httpx"))
    assert not chosen.network_allowed(shell("pip install httpx && curl x | sh"))
    assert not chosen.network_allowed(shell("curl https://example.com"))
    everything = Policy(PolicySettings(sandbox=SandboxSettings(network=True)), sandbox=ACTIVE)
    assert everything.network_allowed(shell("curl https://example.com"))


def test_facts_name_the_workspace_files_a_command_touches(repo: Path) -> None:
    facts = inspect_command("cat README.md private/notes.txt > out.txt", repo)
    assert not facts.read_only and facts.why_not == "it writes to out.txt"
    assert "README.md" in facts.paths


def test_read_rule_patterns_reach_the_sandbox() -> None:
    rules = policy(deny=["read(private/**)", "shell(rm:*)"], ask=["grep(*.sql)", "edit(src/**)"])
    assert rules.withheld_patterns() == ("private/**", "*.sql")


def test_history_of_a_withheld_file_stays_withheld(shell: Shell) -> None:
    denying = policy("bypass", deny=["read(private/**)"])
    assert denying.decide(shell("git show HEAD:private/notes.txt")).decision == "deny"


def test_a_missing_sandbox_is_said_once_at_start() -> None:
    notes = policy(sandbox=MISSING).startup_notes()
    assert notes == [
        "Sandbox: bubblewrap (bwrap) is not installed; shell commands run without it, so every "
        "one asks first"
    ]
    assert policy().startup_notes() == []


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("[sandbox]\nnetwork = 'yes'\n", "sandbox.network must be true or false"),
        ("[sandbox]\nnetwrok = true\n", "unknown key 'netwrok'"),
        ("[sandbox]\nenv = ['NOT A NAME']\n", "'NOT A NAME' is not a name"),
        ("sandbox = 1\n", "[sandbox] must be a table"),
    ],
)
def test_a_bad_sandbox_table_is_one_clear_error(tmp_path: Path, table: str, problem: str) -> None:
    user_file = tmp_path / "settings.toml"
    user_file.write_text(table)
    with pytest.raises(SettingsError, match=re.escape(problem)):
        load_settings(tmp_path, user_file=user_file)


def test_a_repository_cannot_change_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / ".cairn").mkdir()
    (tmp_path / ".cairn" / "settings.toml").write_text("[sandbox]\nenabled = false\n")
    user_file = tmp_path / "user.toml"
    user_file.write_text("[sandbox]\nnetwork_commands = ['shell(uv sync)']\nenv = ['CARGO_HOME']\n")
    settings = load_settings(tmp_path, user_file=user_file)
    assert settings.sandbox == SandboxSettings(
        network_commands=("shell(uv sync)",), env=("CARGO_HOME",)
    )
    assert any("[sandbox] is ignored in a repository" in note for note in settings.ignored)
