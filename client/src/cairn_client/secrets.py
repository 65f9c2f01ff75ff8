"""Secrets on the client side: which files hold them, and the environment a shell may see.

Owns the secret-file classification (names, plus content for .npmrc-style files) and the
scrubbed environment; cutting secrets from text is cairn_protocol.redaction's (shared).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from fnmatch import fnmatchcase, translate
from pathlib import Path, PurePosixPath

# Basename globs of files denied by default; `!` patterns are exceptions (public keys).
SECRET_NAME_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.ppk",
    "*.kdbx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pgpass",
    ".htpasswd",
    "credentials",
    "credentials.json",
    "credentials.y*ml",
    "credentials.toml",
)
# Public keys, and the templates projects commit to show which variables exist (their
# content still passes through redaction like any output).
_PUBLIC_NAME_PATTERNS: tuple[str, ...] = (
    "*.pub",
    ".env.example",
    ".env.sample",
    ".env.template",
    ".env.dist",
)
# Config files that are secret only when they hold a token or password.
TOKEN_CONFIG_NAMES: frozenset[str] = frozenset({".npmrc", ".pypirc", ".yarnrc.yml"})
_TOKEN_CONFIG_CONTENT = re.compile(
    r"_auth(?:Token)?\s*[=:]|npmAuthToken|^\s*password\s*[=:]|^\s*token\s*[=:]",
    re.IGNORECASE | re.MULTILINE,
)
_CONTENT_SNIFF_BYTES = 65536
# Each list of globs as one pattern (what fnmatchcase does, once per name, not per glob: the
# `@` completion checks every file of a large repository).
_SECRET_NAME = re.compile("|".join(translate(pattern) for pattern in SECRET_NAME_PATTERNS))
_PUBLIC_NAME = re.compile("|".join(translate(pattern) for pattern in _PUBLIC_NAME_PATTERNS))


def is_secret_name(relative: str) -> bool:
    """Whether a path's name alone marks it secret (no file access; `.aws/credentials` too)."""
    pure = PurePosixPath(relative.replace("\\", "/"))
    name = pure.name
    if not name or _PUBLIC_NAME.match(name):
        return False
    if _SECRET_NAME.match(name):
        return True
    return pure.parent.name in (".aws", ".docker", ".kube") and name in ("credentials", "config")


def is_secret_file(path: Path) -> bool:
    """Whether the file at `path` may hold secrets: by name, or a token config with tokens."""
    if is_secret_name(path.as_posix()):
        return True
    if path.name not in TOKEN_CONFIG_NAMES:
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(_CONTENT_SNIFF_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return True  # unreadable now; refuse rather than guess
    return _TOKEN_CONFIG_CONTENT.search(head) is not None


def secret_checker(root: Path, allowed: Collection[str] = ()) -> Callable[[str], bool]:
    """A cached `is_secret(workspace-relative path)` for one workspace and its allow-list.

    `allowed` holds workspace-relative POSIX paths (or globs) the user explicitly allowed.
    """
    seen: dict[str, bool] = {}

    def is_secret(relative: str) -> bool:
        known = seen.get(relative)
        if known is None:
            key = normalise_relative(relative)
            known = seen[relative] = not is_allowed(key, allowed) and is_secret_file(root / key)
        return known

    return is_secret


def is_allowed(relative: str, allowed: Collection[str]) -> bool:
    """Whether the user's allow-list (paths or globs, workspace-relative) names `relative`."""
    key = normalise_relative(relative)
    return any(
        key == normalise_relative(entry) or fnmatchcase(key, normalise_relative(entry))
        for entry in allowed
    )


def normalise_relative(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/").removeprefix("./")).as_posix()


def withheld_note(relative: str) -> str:
    """The refusal the model reads for a secret file, with what it can do instead."""
    return (
        f"{relative} may hold secrets (keys, tokens, passwords), so its content is withheld. "
        "Do not try to read it another way; if its values are needed, ask the user, who can "
        f'allow this file explicitly (settings key "allow_secret_files": ["{relative}"])'
    )


# --------------------------------------------------------------------------- environment

# Client variables that are secret whatever their shape.
_CLIENT_SECRET_VARS = frozenset(
    {"CAIRN_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DATABASE_URL", "SSH_AUTH_SOCK"}
)
_SECRET_VAR_NAME = re.compile(
    r"(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?|AUTH|COOKIE|SESSION)"
    r"(?:_[A-Z0-9]+)?$|PASSWORD|SECRET|^AWS_|^AZURE_|^GCP_|^GOOGLE_APPLICATION_CREDENTIALS$",
    re.IGNORECASE,
)
_KEPT_VARS = frozenset({"PATH", "HOME", "LANG", "TERM", "USER", "SHELL", "TMPDIR", "PWD"})


def is_secret_variable(name: str) -> bool:
    if name in _KEPT_VARS or name.startswith("LC_"):
        return False
    return name in _CLIENT_SECRET_VARS or _SECRET_VAR_NAME.search(name) is not None


def scrubbed_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` (the client's snapshot from its settings) without variables whose names look
    secret."""
    return {name: value for name, value in env.items() if not is_secret_variable(name)}
