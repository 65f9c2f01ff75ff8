"""The one redaction engine: every secret format it knows is cut, wherever it stands (diffs,
grep and read output, JSON, YAML, TOML, .netrc), and ordinary code is left alone.

All secrets here are made-up values in the real formats, built by concatenation so that
this file does not itself look like a leak to a scanner.
"""

from __future__ import annotations

import json

import pytest
from cairn_protocol.redaction import redact, redaction_note

PASSWORD = "8XMhBBDHtaDYxv76"
AZURE_KEY = (
    "A3WHwcx5lq1/dvpR0f5FggPbkzPO/hLiLdS4I5DxGRIPcSdVcCtTamCxwQ3Xc3qXR1E9l1wK3teVpIlUf+qrOQ=="
)
SAS_SIG = "V4NrXnrB5GxqBLr5JNI0bgs%2BcCoGDeIUmkyngW8P0Bw%3D"
HF = "hf_" + "1Ddz1LMYlBg1YIsYKA7M00M0JGEjf7bIDA"
GCP_KEY_ID = "209c4270b0b68ab81d1b6ef9a4466a791f54ae36"
NPM = "npm_" + "Xaq7amCzoZtgDSqxmcS0aary2wt4HTcRtt9q"
PYPI = (
    "pypi-" + "AgEIcHlwaS5vcmc" + "eQWo7MIfmE26gztFomw0HiY9_MAs-IQRs3wH7hHSeeVn1LQTDaAPRgUWoY_HR3Z"
)
GITLAB = "glpat-" + "E4HTPVwRQdaWWrNPSlZp"
TWILIO_SID = "AC" + "4191e387de9f58786e464a9508a58d19"
TWILIO_KEY = "SK" + "c28dda59cf7fab27f12dc82736dd464a"
SENDGRID = "SG." + "GHX2NJslWPJWP2c4YcDFCH" + "." + "HJdJPyV2INwU4w1bqfcKHDO6oYeIHp5jlxNRGptRkTv"
MAILGUN = "key-" + "89dec9b97ff6de8cf4195b1dd920384f"
SQUARE_TOKEN = "sq0atp-" + "tU78epwhhtdQeG6KcWuvu7"
SQUARE_SECRET = "sq0csp-" + "fSwQkFEfmzUyxCI62LKhesSNzVm4eFGl0EbN4zsYKEU"
DISCORD = "Ma7rYDfnKCSwGxoMR7waZBCW" + "." + "StCE78" + "." + "TpTusiH3okN9cp26BOZrntK3LSz"
TELEGRAM = "7997112591" + ":" + "AAU5nqocoshv7MdxvwGbrB81d6AFVYwCWg2"
SHOPIFY = "shpat_" + "c96697ea8725697853a7edca19d60ae3"
DIGITALOCEAN = "dop_v1_" + "9d4ec5ec75631c300ed578753abe7534d3c7aacbdeb2868ab5fad9c4a369a27c"
DOPPLER = "dp.pt." + "sH3HPH4vlTXY2oweji7uO7IlhKcDeqy5i9eHR4jCrXB"
BASIC = "ZGVwbG95OlRyMHViNGRvci1hbmQtMw=="
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GITHUB_PAT = "github_pat_" + "11AAQ7Y2A0kZ8mJp3LqX2v_9sTzWbNcR4dEfGhIjKlMnOpQrS"
OPENAI = "sk-proj-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
ANTHROPIC = "sk-ant-api03-" + "q7Rz2XkP9mW4vN8bT1cY6hJ3sL5dF0gA"
AWS_ID = "AKIA" + "2E0A8F3B244C9986"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY9x2Lm4Qz8T"
SLACK = "xoxb-" + "123456789012-1234567890123-uZMLcP0n6o2jXrMupS2jtujA"
GOOGLE = "AIza" + "SyD4x9Kq2LmN8pR3sT6vW1yZ0aB5cE7fG9h"
GOOGLE_OAUTH = "GOCSPX-" + "9AVgl7Hf1jZBkAUtpnFrEWMTpoNI"
STRIPE = "sk_live_" + "SDfkaUWlZuyfwyMgAVTL8aeE"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
KEY_BODY = "MIIEpAIBAAKCAQEA7Vq3kZ8mJp3LqX2v9sTzWbNcR4dEfGhIjKlMnOpQrStUv"
RSA_KEY = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n-----END RSA PRIVATE KEY-----"
ENTROPY = "Zq8xR2mT7vLp4Nw9Kc3Hy6Bd1Fg5Js0Q"

FORMATS = [
    # name=value however it is printed
    ("env in a diff", f"+DB_PASSWORD={PASSWORD}", PASSWORD, "secret-value"),
    ("a value naming its kind", "ADMIN_PASSWORD=MyPassw0rd2024", "MyPassw0rd2024", None),
    ("env removed in a diff", f"-API_KEY={PASSWORD}", PASSWORD, "secret-value"),
    ("env as diff context", f" SECRET_TOKEN={PASSWORD}", PASSWORD, "secret-value"),
    ("env in grep output", f"config/.env.prod:3:DB_PASSWORD={PASSWORD}", PASSWORD, "secret-value"),
    ("INI in read output", f"7\tpassword = {PASSWORD}", PASSWORD, "secret-value"),
    ("JSON", f'{{"db": {{"password": "{PASSWORD}"}}}}', PASSWORD, "secret-value"),
    ("JSON in a JSON string", f'"{{\\"api_key\\": \\"{PASSWORD}\\"}}"', PASSWORD, "secret-value"),
    ("YAML", f"database:\n  password: {PASSWORD}\n", PASSWORD, "secret-value"),
    ("YAML in a diff", f"+  client_secret: {PASSWORD}  # rotate yearly", PASSWORD, "secret-value"),
    ("TOML", f'[service]\napi_key = "{PASSWORD}"\n', PASSWORD, "secret-value"),
    ("query string", f"GET /v1/items?access_token={PASSWORD}&page=2", PASSWORD, "secret-value"),
    ("keyword compared", f'if pwd == "{PASSWORD}":', PASSWORD, "secret-value"),
    ("netrc line", f"machine api.example.com login deploy password {PASSWORD}", PASSWORD, None),
    (
        "netrc block",
        f"machine api.example.com\n  login deploy\n  password {PASSWORD}\n",
        PASSWORD,
        None,
    ),
    ("curl -u", f"curl -u deploy:{PASSWORD} https://api.example.com", PASSWORD, None),
    # connection strings
    ("postgres", f"postgres://app:{PASSWORD}@db.internal:5432/app", PASSWORD, None),
    ("mysql", f"DATABASE_URL=mysql://root:{PASSWORD}@127.0.0.1:3306/shop", PASSWORD, None),
    ("mongodb+srv", f"mongodb+srv://app:{PASSWORD}@cluster0.ab1cd.mongodb.net/", PASSWORD, None),
    ("redis password only", f"REDIS_URL=redis://:{PASSWORD}@cache:6379/0", PASSWORD, None),
    # keys and key ids
    ("private key", f"key:\n{RSA_KEY}\nafter", KEY_BODY, "private-key"),
    (
        "private key in a diff",
        "+-----BEGIN OPENSSH PRIVATE KEY-----\n+b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
        "+-----END OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
        "private-key",
    ),
    (
        "private key in JSON",
        f'"private_key": "-----BEGIN PRIVATE KEY-----\\n{KEY_BODY}\\n-----END PRIVATE KEY-----\\n"',
        KEY_BODY,
        "private-key",
    ),
    (
        "GCP private_key_id",
        f'  "private_key_id": "{GCP_KEY_ID}",',
        GCP_KEY_ID,
        "gcp-private-key-id",
    ),
    (
        "Azure AccountKey",
        f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={AZURE_KEY};"
        "EndpointSuffix=core.windows.net",
        AZURE_KEY,
        "azure-storage-key",
    ),
    (
        "Azure SharedAccessSignature",
        f"BlobEndpoint=https://acme.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sig={SAS_SIG}",
        SAS_SIG,
        "azure-sas",
    ),
    (
        "Azure SAS URL",
        f"https://acme.blob.core.windows.net/c/f.zip?sv=2022-11-02&se=2030-01-01&sp=r&sig={SAS_SIG}",
        SAS_SIG,
        "azure-sas",
    ),
    # tokens by their format
    ("Hugging Face", f'login("{HF}")', HF, "huggingface-token"),
    ("npm _authToken", f"//registry.npmjs.org/:_authToken={NPM}", NPM, "npm-token"),
    ("PyPI", f"[pypi]\nusername = __token__\npassword = {PYPI}\n", PYPI, "pypi-token"),
    ("GitLab", f"git clone https://oauth2:{GITLAB}@gitlab.com/acme/app.git", GITLAB, None),
    ("GitLab bare", f"export CI_TOKEN_X {GITLAB}", GITLAB, "gitlab-token"),
    ("Twilio SID", f"client = Client({TWILIO_SID!r}, auth)", TWILIO_SID, "twilio-key"),
    ("Twilio API key", f"twilio api:core:keys --sid {TWILIO_KEY}", TWILIO_KEY, "twilio-key"),
    ("SendGrid", f"sg = SendGridAPIClient({SENDGRID!r})", SENDGRID, "sendgrid-key"),
    ("Mailgun", f"auth=('api', '{MAILGUN}')", MAILGUN, "mailgun-key"),
    ("Square access token", f"client = Square(token={SQUARE_TOKEN!r})", SQUARE_TOKEN, None),
    ("Square OAuth secret", f"secret {SQUARE_SECRET}", SQUARE_SECRET, None),
    ("Discord bot", f"bot.run({DISCORD!r})", DISCORD, "discord-bot-token"),
    ("Telegram bot", f"https://api.telegram.org/bot{TELEGRAM}/getMe", TELEGRAM, None),
    ("Shopify", f"X-Shopify-Access-Token: {SHOPIFY}", SHOPIFY, "shopify-token"),
    ("DigitalOcean", f"doctl auth init -t {DIGITALOCEAN}", DIGITALOCEAN, "digitalocean-token"),
    ("Doppler", f"doppler configure set token {DOPPLER}", DOPPLER, "doppler-token"),
    ("Basic auth header", f"Authorization: Basic {BASIC}", BASIC, "authorization-header"),
    (
        "Bearer header in curl",
        f'curl -H "Authorization: Bearer {PASSWORD}" https://api.example.com',
        PASSWORD,
        "authorization-header",
    ),
    ("GitHub classic", f"token: {GITHUB}", GITHUB, "github-token"),
    ("GitHub fine-grained", f"gh auth login --with-token <<< {GITHUB_PAT}", GITHUB_PAT, None),
    ("OpenAI", f"client = OpenAI(api_key={OPENAI!r})", OPENAI, "openai-key"),
    ("Anthropic", f"x = '{ANTHROPIC}'", ANTHROPIC, "anthropic-key"),
    ("AWS key id", f"id {AWS_ID}", AWS_ID, "aws-access-key-id"),
    ("AWS secret", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET, "aws-secret-key"),
    ("Slack", f"SLACK={SLACK}", SLACK, "slack-token"),
    ("Google API key", f"maps?key={GOOGLE}", GOOGLE, "google-api-key"),
    ("Google OAuth secret", f'"client_secret": "{GOOGLE_OAUTH}"', GOOGLE_OAUTH, None),
    ("Stripe", f"stripe.api_key = {STRIPE!r}", STRIPE, "stripe-key"),
    ("JWT", f"Cookie: session={JWT}", JWT, "jwt"),
    ("high entropy string", f'SIGNING = "{ENTROPY}"', ENTROPY, "high-entropy-string"),
]


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [case[1:] for case in FORMATS],
    ids=[case[0] for case in FORMATS],
)
def test_every_known_format_is_cut(text: str, secret: str, kind: str | None) -> None:
    redacted, count = redact(text)
    assert secret not in redacted and count >= 1, redacted
    assert f"[REDACTED:{kind or ''}" in redacted


def test_there_are_at_least_25_formats() -> None:
    assert len({case[0] for case in FORMATS}) >= 25


def test_the_rest_of_the_line_stays_readable() -> None:
    redacted, count = redact(f"DATABASE_URL=postgres://postgres:{PASSWORD}@db:5432/app\nDEBUG=1")
    assert (
        redacted == "DATABASE_URL=postgres://postgres:[REDACTED:secret-value]@db:5432/app\nDEBUG=1"
    )
    assert count == 1


def test_a_token_is_cut_everywhere_a_named_value_only_where_it_was_named() -> None:
    text = f"GITHUB_TOKEN={GITHUB}\necho {GITHUB}\nPASSWORD={PASSWORD}\nthe value {PASSWORD}"
    redacted, count = redact(text)
    assert GITHUB not in redacted and redacted.count("[REDACTED:github-token]") == 2
    assert redacted.splitlines()[2] == "PASSWORD=[REDACTED:secret-value]"
    assert count == 2  # distinct secrets


def test_redacting_twice_finds_nothing_more() -> None:
    once, _ = redact("\n".join(case[1] for case in FORMATS))
    assert redact(once) == (once, 0)


def test_a_private_key_cut_off_by_an_output_cap_is_still_cut() -> None:
    redacted, count = redact("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n[… cut …]")
    assert "b3BlbnNzaC1rZXk" not in redacted and count == 1 and "[… cut …]" in redacted


def test_code_that_only_names_a_key_header_is_left_alone() -> None:
    line = 'if text.startswith("-----BEGIN RSA PRIVATE KEY-----"):'
    assert redact(line) == (line, 0)


def test_the_note_counts() -> None:
    assert redaction_note(1) == "[1 secret redacted]"
    assert redaction_note(3) == "[3 secrets redacted]"


# --------------------------------------------------------------------------- false positives


@pytest.mark.parametrize(
    "text",
    [
        "token = request.headers.get('x')",
        "def get_token(self, api_key: str) -> str:",
        "max_tokens=100000",
        'tokenizer: "bert-base"',
        "TOKEN=$TOKEN",
        "password: str",
        "password = None",
        "api_key: SecretStr = Field(default=None)",
        "self.secret = secret",
        "password = os.environ['DB_PASSWORD']",
        'API_KEY_ENV = "OPENAI_API_KEY"',
        'PREFIX = "ghp_" + suffix',
        "client = Client(api_key=api_key, timeout=timeout)",
        'headers = {"Authorization": f"Bearer {token}"}',
        'error = "password must be at least 12 characters"',
        "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX",
        "git@github.com:acme/app.git",
        "http://localhost:8080/path@v2",
        "Env var: `LETTA_API_KEY=sk-...` bypasses the prompt",  # docs: a key elided
        'OPENAI_API_KEY="sk-\u2026"',
    ],
)
def test_ordinary_code_is_left_alone(text: str) -> None:
    assert redact(text) == (text, 0)


PYTHON_SOURCE = '''\
"""Cache of build artefacts, keyed by content hash."""

import base64
import hashlib
import uuid

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
PINNED_COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"
FIXTURE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
REQUEST_ID = "3f2656c8-6ecf-2857-e367-7d041f964ce1"
HELLO = base64.b64encode(b"hello world").decode()  # "aGVsbG8gd29ybGQ="


class ArtifactCache:
    def __init__(self, root, token_budget: int = 4096, secret_store=None) -> None:
        self.root = root
        self.secret_store = secret_store
        self.token_budget = token_budget

    def key(self, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def password_for(self, user: str) -> str:
        password = self.secret_store.get(user)
        if password is None:
            raise KeyError(f"no password stored for {user}")
        return password

    def new_id(self) -> str:
        return str(uuid.uuid4())
'''

PYPI_FILES = "https://files.pythonhosted.org/packages"
UV_LOCK = "\n".join(
    [
        "version = 1",
        'requires-python = ">=3.11"',
        "",
        "[[package]]",
        'name = "anyio"',
        'version = "4.6.2"',
        'source = { registry = "https://pypi.org/simple" }',
        'dependencies = [{ name = "idna" }, { name = "sniffio" }]',
        f'sdist = {{ url = "{PYPI_FILES}/9f/09/anyio-4.6.2.tar.gz", '
        'hash = "sha256:f72a7bb3dd0752b3bd8b17a844a019d77fd0e95e2f3a3a3e2e5c4d6f7a8b9c0d", '
        "size = 173422 }",
        "wheels = [",
        f'    {{ url = "{PYPI_FILES}/e4/f5/anyio-4.6.2-py3-none-any.whl", '
        'hash = "sha256:6d2fb8c7a0e5bd72ed4e1b9d3a4f5e6c7b8a9d0e1f2a3b4c5d6e7f8091a2b3c4", '
        "size = 89766 },",
        "]",
    ]
)
PACKAGE_LOCK = json.dumps(
    {
        "name": "web",
        "lockfileVersion": 3,
        "packages": {
            "node_modules/react": {
                "version": "18.3.1",
                "resolved": "https://registry.npmjs.org/react/-/react-18.3.1.tgz",
                "integrity": "sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve"
                "+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
            },
            "node_modules/loose-envify": {
                "version": "1.4.0",
                "resolved": "git+ssh://git@github.com/zertosh/loose-envify.git"
                "#7c7d8b4a1f2e3d4c5b6a79881726354433221100",
                "integrity": "sha1-5e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d",
            },
        },
    },
    indent=2,
)

GIT_LOG = """\
commit 9fceb02d0ae598e95dc970b74767f19372d61af8
Author: Ada <ada@example.com>
Date:   Mon Dec 7 08:00:00 2026 +0000

    Merge 3f2656c86ecf2857e3677d041f964ce1 into main (token refresh, key rotation)

diff --git a/app/auth.py b/app/auth.py
index 1a2b3c4..5d6e7f8 100644
--- a/app/auth.py
+++ b/app/auth.py
@@ -1,3 +1,4 @@
+    token = refresh_token(session)
"""


@pytest.mark.parametrize(
    "text",
    [PYTHON_SOURCE, UV_LOCK, PACKAGE_LOCK, GIT_LOG],
    ids=["python source", "uv.lock", "package-lock.json", "git log"],
)
def test_source_and_lock_files_are_not_mangled(text: str) -> None:
    assert redact(text) == (text, 0)


def test_a_value_in_backticks_or_with_an_ellipsis_inside_is_still_cut() -> None:
    assert redact("db_password = `Xk9#mQ2!vL7pR4zW`") == (
        "db_password = `[REDACTED:secret-value]`",
        1,
    )
    assert redact("PASSWORD=hunter...2024x") == ("PASSWORD=[REDACTED:secret-value]", 1)


def test_a_private_key_in_grep_output_is_cut_whole() -> None:
    grep_output = (
        "deploy/signing.txt:3:-----BEGIN RSA PRIVATE KEY-----\n"
        "deploy/signing.txt:4:MIIEowIBAAKCAQEA3L58vI7wNjQfxhdTCl6KNFF39xn9\n"
        "deploy/signing.txt-5-69RAaX70qm+2nwtDKe/abcdefgh==\n"
        "deploy/signing.txt:6:-----END RSA PRIVATE KEY-----\n"
        "other.py:1:print(1)"
    )
    text, count = redact(grep_output)
    assert count == 1
    assert text == "deploy/signing.txt:3:[REDACTED:private-key]\nother.py:1:print(1)"


# The plugins whose scans are skipped unless their text appears (redaction._PLUGIN_HINTS):
# each still finds its format, whatever the case where its pattern ignores case.
HINTED = [
    ("aws-key", f"id = {AWS_ID}\n", AWS_ID),
    ("aws-key", "Aws_Key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY'\n", "EXAMPLEKEY"),
    ("artifactory-token", "token: AKCp8" + "jQ8CMZbFfHmSpRe7zJgYxKjBbM2Bd4RxN3\n", "AKCp8"),
    ("gitlab-token", f"export T={GITLAB}\n", GITLAB),
    ("mailchimp-key", "key = 8a4c3b2e1f0d9c8b7a6f5e4d3c2b1a09" + "-us12\n", "-us12"),
    ("slack-token", f"SLACK={SLACK.upper()}\n", SLACK.upper()),
    (
        "slack-token",
        "hook: HTTPS://HOOKS.SLACK.COM/services/T0123ABCD/B0123ABCD/" + "abcdefghijklmnop\n",
        "T0123ABCD",
    ),
    ("stripe-key", f"stripe.api_key = '{STRIPE}'\n", STRIPE),
]


@pytest.mark.parametrize(("kind", "text", "part"), HINTED)
def test_a_plugin_skipped_without_its_hint_still_finds_its_format(
    kind: str, text: str, part: str
) -> None:
    from cairn_protocol.redaction import _plugin_detectors

    [detector] = [d for d in _plugin_detectors() if d.kind == kind]
    found = [f.value for f in detector.find("import os\n" * 50 + text)]
    assert found and all(value in text for value in found), (kind, found)
    assert any(part in value or value in part for value in found), (kind, found)
    assert [f.value for f in detector.find("import os\n" * 50)] == []
