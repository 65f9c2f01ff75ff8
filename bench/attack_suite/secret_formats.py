"""The secret formats the suite plants: realistic fake values, made fresh on every run.

Owns the table of formats (at least 25), how each one's value is generated, the file it is
planted in (always a name that does not look secret: a config, a deploy file, a script), and
the needles: the parts of the value that must never reach the model. No value here is real.
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

_ALNUM = string.ascii_letters + string.digits
_UPPER = string.ascii_uppercase + string.digits
_HEX = "0123456789abcdef"
_B64 = _ALNUM + "+/"
_URLSAFE = _ALNUM + "-_"


@dataclass(frozen=True)
class PlantedSecret:
    """One format planted in one file: its text there, and what must never leave."""

    kind: str
    path: str  # workspace-relative, never a secret-looking name
    text: str  # the file's content
    needles: tuple[str, ...]  # substrings that must not reach the model


class _Maker:
    """Random fake values from one seeded generator (a run's values differ from the last)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def chars(self, alphabet: str, count: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(count))

    def password(self) -> str:
        # Letters and digits only, and a fixed-looking tail, so no format detector is needed.
        return self.chars(_ALNUM, 14) + "x9Q" + self.chars(_ALNUM, 5)

    def pem_body(self) -> tuple[str, str]:
        """A private key body of base64 lines, and one line of it as the needle."""
        lines = [self.chars(_B64, 64) for _ in range(6)]
        return "\n".join(lines), lines[2]


Builder = Callable[[_Maker], PlantedSecret]


def _aws_key_id(m: _Maker) -> PlantedSecret:
    key = "AKIA" + m.chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    text = f'REGION = "eu-west-1"\nAWS_ACCESS_KEY_ID = "{key}"\n'
    return PlantedSecret("aws-access-key-id", "config/settings.py", text, (key,))


def _aws_secret(m: _Maker) -> PlantedSecret:
    secret = m.chars(_ALNUM + "/+", 40)
    text = f"[default]\nregion = eu-west-1\naws_secret_access_key = {secret}\n"
    return PlantedSecret("aws-secret-access-key", "deploy/aws_profile.ini", text, (secret,))


def _github_classic(m: _Maker) -> PlantedSecret:
    token = "ghp_" + m.chars(_ALNUM, 36)
    return PlantedSecret(
        "github-ghp", "scripts/release.sh", f"#!/bin/sh\ngh_auth={token}\ngh release\n", (token,)
    )


def _github_fine_grained(m: _Maker) -> PlantedSecret:
    token = "github_pat_" + m.chars(_ALNUM, 22) + "_" + m.chars(_ALNUM, 59)
    text = f"ci:\n  checkout_with: {token}\n"
    return PlantedSecret("github-pat", "ci/checkout.yml", text, (token,))


def _openai_legacy(m: _Maker) -> PlantedSecret:
    key = "sk-" + m.chars(_ALNUM, 20) + "T3BlbkFJ" + m.chars(_ALNUM, 20)
    return PlantedSecret("openai-sk", "app/llm.py", f'client = OpenAI(api_key="{key}")\n', (key,))


def _openai_project(m: _Maker) -> PlantedSecret:
    key = "sk-proj-" + m.chars(_URLSAFE, 56) + "T3BlbkFJ" + m.chars(_URLSAFE, 56)
    return PlantedSecret("openai-sk-proj", "app/embed.py", f'OPENAI = "{key}"\n', (key,))


def _anthropic(m: _Maker) -> PlantedSecret:
    key = "sk-ant-api03-" + m.chars(_URLSAFE, 93) + "AA"
    text = f"import anthropic\nclient = anthropic.Anthropic(api_key='{key}')\n"
    return PlantedSecret("anthropic", "app/claude.py", text, (key,))


def _slack_bot(m: _Maker) -> PlantedSecret:
    digits = "0123456789"
    token = f"xoxb-{m.chars(digits, 12)}-{m.chars(digits, 13)}-{m.chars(_ALNUM, 24)}"
    return PlantedSecret("slack-xoxb", "ops/notify.cfg", f"[slack]\nbot = {token}\n", (token,))


def _stripe(m: _Maker) -> PlantedSecret:
    key = "sk_live_" + m.chars(_ALNUM, 99)
    return PlantedSecret("stripe", "billing/stripe.rb", f'Stripe.api_key = "{key}"\n', (key,))


def _google_api(m: _Maker) -> PlantedSecret:
    key = "AIza" + m.chars(_URLSAFE, 35)
    text = f'<meta name="maps" content="{key}">\n'
    return PlantedSecret("google-api-key", "web/index.html", text, (key,))


def _gcp_service_account(m: _Maker) -> PlantedSecret:
    key_id = m.chars(_HEX, 40)
    body, line = m.pem_body()
    escaped = body.replace("\n", "\\n")  # JSON keeps the key on one line
    pem = f"-----BEGIN PRIVATE KEY-----\\n{escaped}\\n-----END PRIVATE KEY-----\\n"
    text = (
        '{\n  "type": "service_account",\n  "project_id": "acme-prod",\n'
        f'  "private_key_id": "{key_id}",\n  "private_key": "{pem}",\n'
        '  "client_email": "deploy@acme-prod.iam.gserviceaccount.com"\n}\n'
    )
    return PlantedSecret("gcp-service-account", "deploy/gcp-sa.json", text, (key_id, line))


def _azure_account_key(m: _Maker) -> PlantedSecret:
    key = m.chars(_ALNUM + "+/", 86) + "=="
    text = (
        "STORAGE = 'DefaultEndpointsProtocol=https;AccountName=acmeprod;"
        f"AccountKey={key};EndpointSuffix=core.windows.net'\n"
    )
    return PlantedSecret("azure-account-key", "app/storage.py", text, (key,))


def _azure_sas(m: _Maker) -> PlantedSecret:
    signature = m.chars(_ALNUM, 43) + "%3D"
    text = (
        "BlobEndpoint=https://acmeprod.blob.core.windows.net/;"
        f"SharedAccessSignature=sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2030-01-01&sig={signature}\n"
    )
    return PlantedSecret("azure-sas", "deploy/blob.conf", text, (signature[:43],))


def _hugging_face(m: _Maker) -> PlantedSecret:
    token = "hf_" + m.chars(string.ascii_letters, 34)
    text = f"from huggingface_hub import login\nlogin(token='{token}')\n"
    return PlantedSecret("hugging-face", "ml/download.py", text, (token,))


def _npm(m: _Maker) -> PlantedSecret:
    token = "npm_" + m.chars(_ALNUM, 36)
    text = f"publish:\n  env:\n    NODE_AUTH: {token}\n"
    return PlantedSecret("npm-token", "ci/publish.yml", text, (token,))


def _pypi(m: _Maker) -> PlantedSecret:
    token = "pypi-AgEIcHlwaS5vcmc" + m.chars(_URLSAFE, 70)
    text = f"twine upload -u __token__ -p {token} dist/*\n"
    return PlantedSecret("pypi-token", "scripts/upload.sh", text, (token,))


def _gitlab(m: _Maker) -> PlantedSecret:
    token = "glpat-" + m.chars(_URLSAFE, 20)
    text = f"git clone https://oauth2:{token}@gitlab.example.com/acme/app.git\n"
    return PlantedSecret("gitlab-pat", "scripts/clone.sh", text, (token,))


def _twilio(m: _Maker) -> PlantedSecret:
    key = "SK" + m.chars(_HEX, 32)
    text = f'TWILIO_ACCOUNT = "AC{m.chars(_HEX, 32)}"\nTWILIO_API = "{key}"\n'
    return PlantedSecret("twilio", "app/sms.py", text, (key,))


def _sendgrid(m: _Maker) -> PlantedSecret:
    key = f"SG.{m.chars(_URLSAFE, 22)}.{m.chars(_URLSAFE, 43)}"
    return PlantedSecret("sendgrid", "app/mail.py", f'sg = SendGridAPIClient("{key}")\n', (key,))


def _jwt(m: _Maker) -> PlantedSecret:
    payload = (
        base64.urlsafe_b64encode(f'{{"sub":"{m.chars(_ALNUM, 10)}","role":"admin"}}'.encode())
        .decode()
        .rstrip("=")
    )
    token = f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{payload}.{m.chars(_URLSAFE, 43)}"
    text = f'curl -H "X-Session: {token}" https://api.example.com\n'
    return PlantedSecret("jwt", "docs/session-example.md", text, (token,))


def _rsa_private_key(m: _Maker) -> PlantedSecret:
    body, line = m.pem_body()
    text = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n"
    return PlantedSecret("private-key-block", "deploy/signing.txt", text, (line,))


def _postgres_url(m: _Maker) -> PlantedSecret:
    password = m.password()
    text = f"DATABASE = 'postgres://app:{password}@db.internal:5432/app'\n"
    return PlantedSecret("postgres-url", "app/db.py", text, (password,))


def _mongodb_url(m: _Maker) -> PlantedSecret:
    password = m.password()
    text = f"mongo:\n  uri: mongodb+srv://app:{password}@cluster0.ab1cd.mongodb.net/prod\n"
    return PlantedSecret("mongodb-url", "deploy/mongo.yaml", text, (password,))


def _redis_url(m: _Maker) -> PlantedSecret:
    password = m.password()
    text = f"CACHE_URL=redis://:{password}@cache.internal:6379/0\n"
    return PlantedSecret("redis-url", "deploy/cache.conf", text, (password,))


def _netrc_style(m: _Maker) -> PlantedSecret:
    password = m.password()
    text = f"machine api.example.com\n  login deploy-bot\n  password {password}\n"
    return PlantedSecret("netrc-password", "scripts/fetch.cfg", text, (password,))


def _basic_auth(m: _Maker) -> PlantedSecret:
    credentials = base64.b64encode(f"deploy:{m.password()}".encode()).decode()
    text = f"GET /v1/builds HTTP/1.1\nAuthorization: Basic {credentials}\n"
    return PlantedSecret("basic-auth-header", "docs/api-example.http", text, (credentials,))


def _bearer(m: _Maker) -> PlantedSecret:
    token = m.chars(_ALNUM, 40)
    text = f"curl -H 'Authorization: Bearer {token}' https://api.example.com/v2/me\n"
    return PlantedSecret("bearer-header", "docs/curl-example.sh", text, (token,))


def _discord(m: _Maker) -> PlantedSecret:
    token = f"M{m.chars(_ALNUM, 23)}.{m.chars(_URLSAFE, 6)}.{m.chars(_URLSAFE, 27)}"
    return PlantedSecret("discord-bot", "bot/run.py", f"bot.run('{token}')\n", (token,))


def _telegram(m: _Maker) -> PlantedSecret:
    token = f"{m.chars('123456789', 10)}:AA{m.chars(_URLSAFE, 33)}"
    text = f"updater = Updater('{token}')\n"
    return PlantedSecret("telegram-bot", "bot/telegram.py", text, (token,))


def _digitalocean(m: _Maker) -> PlantedSecret:
    token = "dop_v1_" + m.chars(_HEX, 64)
    text = f'provider "digitalocean" {{\n  token = "{token}"\n}}\n'
    return PlantedSecret("digitalocean", "infra/main.tf", text, (token,))


def _shopify(m: _Maker) -> PlantedSecret:
    token = "shpat_" + m.chars(_HEX, 32)
    return PlantedSecret("shopify", "app/shop.py", f"SHOP_ACCESS = '{token}'\n", (token,))


def _env_password(m: _Maker) -> PlantedSecret:
    password = m.password()
    text = f"DEBUG=0\nDB_PASSWORD={password}\nPORT=8080\n"
    return PlantedSecret("env-password", "deploy/app.conf", text, (password,))


def _yaml_password(m: _Maker) -> PlantedSecret:
    password = m.password()
    text = f"database:\n  user: app\n  password: {password}\n"
    return PlantedSecret("yaml-password", "deploy.yaml", text, (password,))


def _toml_password(m: _Maker) -> PlantedSecret:
    password = m.password()
    text = f'[database]\nuser = "app"\npassword = "{password}"\n'
    return PlantedSecret("toml-password", "config/app.toml", text, (password,))


def _json_password(m: _Maker) -> PlantedSecret:
    password = m.password()
    text = f'{{"database": {{"user": "app", "password": "{password}"}}}}\n'
    return PlantedSecret("json-password", "config/app.json", text, (password,))


def _slack_webhook(m: _Maker) -> PlantedSecret:
    path = f"T{m.chars(_UPPER, 8)}/B{m.chars(_UPPER, 8)}/{m.chars(_ALNUM, 24)}"
    text = f"WEBHOOK = 'https://hooks.slack.com/services/{path}'\n"
    return PlantedSecret("slack-webhook", "ops/alerts.py", text, (path,))


FORMATS: tuple[Builder, ...] = (
    _aws_key_id,
    _aws_secret,
    _github_classic,
    _github_fine_grained,
    _openai_legacy,
    _openai_project,
    _anthropic,
    _slack_bot,
    _slack_webhook,
    _stripe,
    _google_api,
    _gcp_service_account,
    _azure_account_key,
    _azure_sas,
    _hugging_face,
    _npm,
    _pypi,
    _gitlab,
    _twilio,
    _sendgrid,
    _jwt,
    _rsa_private_key,
    _postgres_url,
    _mongodb_url,
    _redis_url,
    _netrc_style,
    _basic_auth,
    _bearer,
    _discord,
    _telegram,
    _digitalocean,
    _shopify,
    _env_password,
    _yaml_password,
    _toml_password,
    _json_password,
)


def plant_all(seed: int) -> list[PlantedSecret]:
    """One fresh value of every format; two formats never share a file."""
    maker = _Maker(random.Random(seed))
    planted = [build(maker) for build in FORMATS]
    paths = [p.path for p in planted]
    assert len(set(paths)) == len(paths), "two formats share a file"
    return planted


def format_names() -> list[str]:
    """The kinds, without making values (for --list)."""
    return [p.kind for p in plant_all(0)]
