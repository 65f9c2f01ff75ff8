"""Planted secrets never reach the model: a real `cairn -p` session, embedded server and
the fake model server, which records every request body it receives."""

from __future__ import annotations

import json
from pathlib import Path

from cairn_fakes.runner import FakeModelServer
from support.cli import cairn
from support.repos import make_repo
from support.servers import call, model_env, script

OPENAI_KEY = "sk-proj-" + "Pl4nt3dOpenAIKeyVa1ue0123456789"
GITHUB_TOKEN = "ghp_" + "Pl4nt3dGitHubT0kenVa1ue0123456789ab"
KEY_BODY = "MIIEpl4ntedPrivateKeyBody0123456789"
PRIVATE_KEY = (
    f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
)
ENV_SECRET = "pl4nted-env-secret-value-42"
DB_PASSWORD = "Pl4ntedDbPassw0rd"
NPM_TOKEN = "npm_" + "Pl4ntedNpmT0kenVa1ue0123456789abcdef"
AZURE_KEY = (
    "Pl4ntedAzureStorageKey" + "0123456789abcdefghijklmnopqrstuvwxyz+/ABCDEFGHIJKLMNOPQRSTUV=="
)
HF_TOKEN = "hf_" + "Pl4ntedHuggingFaceT0ken0123456789"
GCP_KEY_ID = "0123456789abcdef0123456789abcdef01234567"
PLANTED = (
    OPENAI_KEY,
    GITHUB_TOKEN,
    KEY_BODY,
    ENV_SECRET,
    "test-openai-key",
    DB_PASSWORD,
    NPM_TOKEN,
    AZURE_KEY,
    HF_TOKEN,
    GCP_KEY_ID,
)


def test_no_planted_secret_reaches_the_model(tmp_path: Path, fake_model: FakeModelServer) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            ".env": f"OPENAI_API_KEY={OPENAI_KEY}\nDB_PASSWORD={DB_PASSWORD}\nDEBUG=1\n",
            ".npmrc": f"//registry.npmjs.org/:_authToken={NPM_TOKEN}\n",
            "deploy/id_ed25519": PRIVATE_KEY,
            "src/config.py": f'GITHUB_TOKEN = "{GITHUB_TOKEN}"\nREGION = "eu"\n',
            "appsettings.json": f'{{"Blob": "AccountName=acme;AccountKey={AZURE_KEY};"}}\n',
            "train.py": f'from huggingface_hub import login\nlogin("{HF_TOKEN}")\n',
            "gcp-sa.json": f'{{"type": "service_account", "private_key_id": "{GCP_KEY_ID}"}}\n',
        },
    )
    turns = [
        call("read", path=".env"),
        call("read", path="src/config.py"),
        call("read", path="deploy/id_ed25519"),
        call("grep", pattern="sk-|ghp_|PRIVATE|OPENAI"),
        call("grep", pattern="sk-", path=".env"),
        call("glob", pattern="**/*"),
        call("shell", command="cat .env deploy/id_ed25519 src/config.py"),
        call("shell", command="env"),
        call("shell", command="git log -p"),
        call("read", path="appsettings.json"),
        call("grep", pattern="AccountKey|hf_|private_key_id"),
    ]
    fake_model.set_script(
        script(*({"tool_calls": [turn]} for turn in turns), {"text": "Done looking."})
    )
    done = cairn(
        repo,
        tmp_path / "data",
        "-p",
        "look around",
        "--approve",
        "all",
        env={"DEPLOY_TOKEN": ENV_SECRET, **model_env(fake_model)},
    )
    assert done.returncode == 0, done.stderr
    assert "Done looking." in done.stdout
    bodies = [json.dumps(request.body) for request in fake_model.requests]
    assert len(bodies) == len(turns) + 1
    for body in bodies:
        for secret in PLANTED:
            assert secret not in body, secret
    answers = _tool_answers(fake_model)
    assert len(answers) == len(turns)
    read_env, read_config, read_key, grep_all, grep_env, glob, cat, env, log, azure, grep_new = (
        answers
    )
    assert "secret" in read_env and "secret" in read_key  # refused, saying why
    assert 'REGION = \\"eu\\"' in read_config or 'REGION = "eu"' in read_config
    assert "[REDACTED:github-token]" in read_config
    assert "src/config.py" in grep_all and ".env" not in grep_all
    assert "secret" in grep_env
    assert ".env (secret: content withheld)" in glob
    # The sandbox hides secret files from shell commands, even under --approve all.
    assert ".env: Permission denied" in cat and "id_ed25519: Permission denied" in cat
    assert "[REDACTED:github-token]" in cat and "REGION" in cat
    assert "PATH=" in env and "DEPLOY_TOKEN" not in env
    assert "REDACTED" in log and "+DEBUG=1" in log
    assert "AccountName=acme;AccountKey=[REDACTED:azure-storage-key]" in azure
    assert (
        "[REDACTED:huggingface-token]" in grep_new and "[REDACTED:gcp-private-key-id]" in grep_new
    )


def _tool_answers(fake: FakeModelServer) -> list[str]:
    messages = fake.requests[-1].body["messages"]
    return [str(m["content"]) for m in messages if m.get("role") == "tool"]
