"""`@path` mentions: which files are offered (ripgrep's listing less what the policy refuses),
how they rank, and what a sent message carries (the read tool's output, or why not)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cairn_client.completion import complete
from cairn_client.mentions import (
    MAX_ATTACHMENTS,
    FileIndex,
    Mentions,
    PathListing,
    mentions,
    rank_paths,
    split_attachments,
)
from cairn_client.policy.settings import PolicySettings
from support.repos import make_repo
from support.settings import policy_for

FILES = {
    "src/app.py": "def total(items):\n    return sum(items)\n",
    "src/cart/checkout.py": "CHECKOUT = 1\n",
    "README.md": "# Shop\n",
    ".env": "API_KEY=sk-live-abcdef0123456789abcdef0123456789\n",
    "private/notes.txt": "not for the model\n",
    "build/out.js": "generated\n",
    ".gitignore": "build/\n",
    "config/settings.py": "TOKEN = 'ghp_0123456789abcdef0123456789abcdef0123'\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "shop", FILES)
    (root / "build").mkdir(exist_ok=True)
    (root / "build" / "out.js").write_text("generated\n")  # ignored, so not committed
    return root


def workspace(root: Path, **settings: list[str]) -> Mentions:
    return Mentions(root, policy_for(PolicySettings(**settings)))  # type: ignore[arg-type]


def offered(root: Path, query: str, **settings: list[str]) -> list[str]:
    """What `@query` offers, at most 50."""
    index = workspace(root, **settings).index
    index.refresh()
    return index.listing.best(query, 50)


def test_the_index_offers_the_workspace_files_less_ignored_secret_and_denied_ones(
    repo: Path,
) -> None:
    everything = offered(repo, "", deny=["read(private/**)"])
    assert {"src/app.py", "src/cart/checkout.py", "README.md", "src/", "src/cart/"} <= set(
        everything
    )
    assert ".env" not in everything and offered(repo, "env") == []  # a secret by name
    assert offered(repo, "notes", deny=["read(private/**)"]) == []  # the user's deny rule
    assert offered(repo, "notes") == ["private/notes.txt"]
    assert offered(repo, "out.js") == []  # .gitignore
    assert not any(path.startswith(".git/") for path in everything)


def test_the_index_lists_again_only_when_stale(repo: Path) -> None:
    now = [0.0]
    index = FileIndex(repo, lambda _path: False, max_age_s=30, clock=lambda: now[0])
    assert index.stale
    index.refresh()
    (repo / "new.py").write_text("x = 1\n")
    assert not index.stale and "new.py" not in index.paths
    now[0] = 31.0
    assert index.stale
    index.refresh()
    assert "new.py" in index.paths


def test_paths_rank_as_names_first_then_paths_then_fuzzy() -> None:
    paths = ["tests/test_checkout.py", "src/cart/checkout.py", "docs/check.md", "chk/x.py"]
    assert rank_paths("check", paths) == [
        "docs/check.md",
        "src/cart/checkout.py",
        "tests/test_checkout.py",
    ]
    assert rank_paths("scc", paths)[0] == "src/cart/checkout.py"  # initials before letters
    assert "chk/x.py" not in rank_paths("scc", paths)
    assert rank_paths("CHECKOUT", paths)[0] == "src/cart/checkout.py"  # any case


def test_completion_replaces_the_word_at_the_cursor() -> None:
    paths = ("src/", "src/app.py", "README.md")
    listing = PathListing.of(paths)
    completion = complete("look at @ap please", 11, lambda: listing)
    assert completion is not None
    assert [candidate.label for candidate in completion.candidates] == ["src/app.py"]
    assert completion.apply("look at @ap please", completion.candidates[0]) == (
        "look at @src/app.py please",
        20,
    )
    folder = complete("@sr", 3, lambda: listing)
    assert folder is not None and folder.candidates[0].replacement == "@src/"  # stays open
    assert complete("mail me@ap", 10, lambda: listing) is None  # no mention inside a word


def test_slash_completion_offers_the_command_table_only_at_the_start() -> None:
    completion = complete("/co", 3)
    assert completion is not None
    assert [candidate.label for candidate in completion.candidates] == [
        "/context",
        "/compact [focus]",
        "/cost",
    ]
    assert complete("tell me /co", 11) is None


def test_mentions_are_found_once_without_trailing_punctuation() -> None:
    text = "compare @src/app.py, @README.md. and @src/app.py (ask me@example.com)"
    assert mentions(text) == ["src/app.py", "README.md"]


async def test_a_mentioned_file_is_attached_as_the_read_tool_shows_it(repo: Path) -> None:
    attached = await workspace(repo).attach("why does @src/app.py return a sum?")
    assert attached.refused == []
    assert attached.notices() == ["Attached src/app.py (2 lines)"]
    assert "1\tdef total(items):" in attached.text
    typed = "why does @src/app.py return a sum?"
    assert split_attachments(attached.text) == (typed, ["src/app.py"])


async def test_secrets_in_an_attached_file_are_redacted(repo: Path) -> None:
    attached = await workspace(repo).attach("check @config/settings.py")
    assert attached.attachments
    assert "ghp_0123456789abcdef" not in attached.text


async def test_hostile_mentions_are_refused_one_line_each_and_the_rest_is_sent(
    repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.txt").write_text("secret outside\n")
    os.symlink(tmp_path / "outside.txt", repo / "link.txt")
    (repo / "logo.png").write_bytes(b"\x89PNG\0\0\0binary")
    text = (
        "look @../../etc/passwd @/etc/shadow @link.txt @.env @private/notes.txt "
        "@logo.png @missing.py @src/ and @README.md"
    )
    attached = await workspace(repo, deny=["read(private/**)"]).attach(text)
    assert [item.path for item in attached.attachments] == ["README.md"]
    refused = dict(line.split(" not attached: ", 1) for line in attached.refused)
    assert set(refused) == {
        "@../../etc/passwd",
        "@/etc/shadow",
        "@link.txt",
        "@.env",
        "@private/notes.txt",
        "@logo.png",
        "@missing.py",
        "@src/",
    }
    assert "outside the workspace" in refused["@/etc/shadow"]
    assert "through a symlink" in refused["@link.txt"]
    assert "secret" in refused["@.env"]
    assert "read(private/**)" in refused["@private/notes.txt"]
    assert "binary" in refused["@logo.png"]
    assert "not found" in refused["@missing.py"]
    assert "secret outside" not in attached.text and "root:" not in attached.text
    assert all("\n" not in line for line in attached.refused)


async def test_a_huge_file_is_attached_within_the_read_tools_cap(repo: Path) -> None:
    (repo / "big.log").write_text("".join(f"line {n}\n" for n in range(50_000)))
    attached = await workspace(repo).attach("@big.log")
    assert len(attached.text) < 150_000
    assert "more lines not shown; continue with offset=" in attached.text


async def test_a_message_carries_a_bounded_number_of_files(repo: Path) -> None:
    for n in range(MAX_ATTACHMENTS + 2):
        (repo / f"f{n}.txt").write_text(f"{n}\n")
    text = " ".join(f"@f{n}.txt" for n in range(MAX_ATTACHMENTS + 2))
    attached = await workspace(repo).attach(text)
    assert len(attached.attachments) == MAX_ATTACHMENTS
    assert len(attached.refused) == 2 and "at most" in attached.refused[0]
