"""Secrets cut from text: the one detector for what leaves the client or enters server memory.

Owns the formats (Yelp's detect-secrets plugins and entropy checks, plus Cairn's own), the
heuristics that spare ordinary code, and the `[REDACTED:kind]` markers that replace secrets.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported at first use: see _detectors
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin


# Short texts come back often (a call's title, its policy's reason, a command): their
# redactions are remembered. Tool outputs, longer, are redacted each time.
_REMEMBERED_CHARS = 1_000


def redact(text: str) -> tuple[str, int]:
    """`text` with every secret found replaced by `[REDACTED:kind]`, and how many."""
    if len(text) <= _REMEMBERED_CHARS:
        return _redact_short(text)
    return _redact(text)


@lru_cache(maxsize=1024)
def _redact_short(text: str) -> tuple[str, int]:
    return _redact(text)


def _redact(text: str) -> tuple[str, int]:
    text, count = _cut_private_keys(text)
    found = _findings(text)
    hit: set[str] = set()
    if found.on_lines:
        lines = text.split("\n")
        for index, line in enumerate(lines):
            if line in found.on_lines:
                lines[index] = _cut_on_line(line, found.on_lines[line], hit)
        text = "\n".join(lines)
    if found.everywhere:
        text = _cut_everywhere(text, found.everywhere, hit)
    return text, count + len(hit)


def redaction_note(count: int) -> str:
    """`[2 secrets redacted]`: appended to a tool result that had secrets cut."""
    return f"[{secrets_phrase(count)} redacted]"


def secrets_phrase(count: int) -> str:
    return f"{count} secret{'s' if count != 1 else ''}"


def _marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# --------------------------------------------------------------------------- private keys

# A PEM/OpenSSH/PGP private key: the BEGIN line, its body (base64 lines, `Proc-Type:`-style
# headers, JSON-escaped newlines, diff `+` marks, grep's `path:12:` line prefixes) and the END
# line if the text still has it.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?P<body>(?:(?<=\n)[^\s:]{1,200}(?:[:-]\d+)?[:-]"  # grep's prefix, before a body line
    r"|[A-Za-z0-9+/=\s]|\\[nr]|[A-Za-z-]+: [^\n]*)*)"
    r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?"
)
_KEY_BODY_MIN = 8  # a BEGIN line quoted in code has no body and is left alone


def _cut_private_keys(text: str) -> tuple[str, int]:
    if "PRIVATE KEY" not in text:
        return text, 0
    count = 0

    def cut(match: re.Match[str]) -> str:
        nonlocal count
        if sum(c.isalnum() for c in match.group("body")) < _KEY_BODY_MIN:
            return match.group()
        count += 1
        return _marker("private-key") + ("\n" if match.group().endswith("\n") else "")

    return _PRIVATE_KEY.sub(cut, text), count


# --------------------------------------------------------------------------- lines

# What may stand before a line's content: read's `12<tab>`, grep's `path:12:` or `path-12-`,
# then a diff's `+` or `-`. Patterns anchored at a line's start allow for it.
_LINE_PREFIX = r"(?:[ \t]*\d+\t|[^\s:]+[:-]\d+[:-])?[+\-]?"
# Lines that name a secret (case aside); the assignment and keyword detectors read only those.
_NAMES = re.compile("pass|pwd|secret|token|key|credential|auth|contrase")


def _named_lines(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if _names_a_secret(line))


def _names_a_secret(text: str) -> bool:
    return _NAMES.search(text.lower()) is not None


@dataclass(frozen=True)
class Found:
    """A secret value, the line it stands on and where in it (when the finder knows)."""

    value: str
    line: str = ""
    column: int | None = None


Finder = Callable[[str], Iterable[Found]]


@dataclass(frozen=True)
class Detector:
    """One kind of secret. A `generic` detector finds values by a name or by entropy alone:
    they must look plausible, and are cut only where found (a format's values are cut
    wherever they appear). A `named` one reads only the lines that name a secret."""

    kind: str
    find: Finder
    generic: bool = False
    named: bool = False


@dataclass(frozen=True)
class Findings:
    """Values to cut everywhere (value → kind), and on one line only (line → found, kind)."""

    everywhere: dict[str, str]
    on_lines: dict[str, list[tuple[Found, str]]]


def _findings(text: str) -> Findings:
    """Each secret in `text` and its kind, from the first (most specific) detector."""
    found = Findings({}, {})
    named = _named_lines(text)
    for detector in _detectors():
        for raw in detector.find(named if detector.named else text):
            secret = _trimmed(raw)
            value = secret.value
            if not value or value in found.everywhere or "REDACTED" in value or _placeholder(value):
                continue
            if not detector.generic:
                found.everywhere[value] = detector.kind
            elif _plausible(value):
                found.on_lines.setdefault(secret.line, []).append((secret, detector.kind))
    return found


# Delimiters some plugins report with the value (`="AKC…"`, Markdown's backticks); a value keeps
# its own `=` padding.
_VALUE_EDGES = re.compile(r"^[\s\"'`=:]*(?P<value>.*?)[\s\"'`]*$", re.DOTALL)


def _trimmed(found: Found) -> Found:
    edges = _VALUE_EDGES.match(found.value)
    if edges is None or edges.start("value") == 0 and edges.end("value") == len(found.value):
        return found
    column = None if found.column is None else found.column + edges.start("value")
    return Found(edges.group("value"), found.line, column)


def _cut_everywhere(text: str, values: dict[str, str], hit: set[str]) -> str:
    """`text` with every occurrence of each value (longest first) replaced by its marker."""
    pattern = "|".join(re.escape(value) for value in sorted(values, key=len, reverse=True))

    def cut(match: re.Match[str]) -> str:
        hit.add(match.group())
        return _marker(values[match.group()])

    return re.sub(pattern, cut, text)


def _cut_on_line(line: str, secrets: list[tuple[Found, str]], hit: set[str]) -> str:
    """`line` with each secret replaced where it was found (or, where the finder did not say,
    wherever it stands as a whole word); of overlapping secrets the first and longest wins."""
    spans: list[tuple[int, int, str]] = []
    for secret, kind in secrets:
        value, column = secret.value, secret.column
        if column is not None and line.startswith(value, column):
            spans.append((column, column + len(value), kind))
        else:
            whole = re.finditer(rf"(?<!\w){re.escape(value)}(?!\w)", line)
            spans.extend((match.start(), match.end(), kind) for match in whole)
    pieces, done = [], 0
    for start, end, kind in sorted(spans, key=lambda span: (span[0], -span[1])):
        if start >= done:
            pieces += [line[done:start], _marker(kind)]
            hit.add(line[start:end])
            done = end
    return "".join([*pieces, line[done:]])


def _line_starts(text: str) -> list[int]:
    return [0, *(match.end() for match in re.finditer("\n", text))]


def _line_at(text: str, starts: list[int], position: int) -> tuple[str, int]:
    """The line holding `position` (`starts`: where each line of `text` starts), and the
    position's column in it."""
    index = bisect_right(starts, position) - 1
    end = starts[index + 1] - 1 if index + 1 < len(starts) else len(text)
    return text[starts[index] : end], position - starts[index]


# --------------------------------------------------------------------------- Cairn's formats


def _word(literal: str) -> str:
    """`literal` where a word starts. The `\b` is a lookbehind after the literal, so the
    regex engine still scans for the literal itself (about 50 times faster than `\b` first)."""
    escaped = re.escape(literal)
    return rf"{escaped}(?<=\b{escaped})"


# Token formats detect-secrets lacks or matches too narrowly; the secret is the `value`
# group, else the whole match. Each starts with a literal, for speed.
_FORMATS: tuple[tuple[str, str], ...] = (
    ("anthropic-key", _word("sk-ant-") + r"[A-Za-z0-9_\-]{20,}"),
    ("openai-key", _word("sk-") + r"(?:proj-|svcacct-|admin-)?(?=[\w\-]{0,160}\d)[\w\-]{20,}"),
    ("github-token", _word("gh") + r"[pousr]_[A-Za-z0-9]{30,}"),
    ("github-token", _word("github_pat_") + r"[A-Za-z0-9_]{22,}"),
    ("slack-token", _word("xox") + r"[abprse]-[A-Za-z0-9\-]{10,}"),
    ("slack-webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_\-]{20,}"),
    ("aws-access-key-id", _word("A") + r"(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}\b"),
    ("aws-secret-key", r"aws_secret_access_key[\"']?\s*[=:]\s*[\"']?(?P<value>[A-Za-z0-9/+=]{40})"),
    ("google-api-key", _word("AIza") + r"[0-9A-Za-z_\-]{35}"),
    ("google-oauth-secret", _word("GOCSPX-") + r"[A-Za-z0-9_\-]{28}"),
    ("gcp-private-key-id", r"private_key_id\\?[\"']?\s*[:=]\s*\\?[\"']?(?P<value>[a-f0-9]{40})\b"),
    ("stripe-key", r"k_(?:live|test)_(?<=\b[rs]k_live_|\b[rs]k_test_)[0-9A-Za-z]{20,}"),
    ("jwt", _word("eyJ") + r"[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("huggingface-token", _word("hf_") + r"[A-Za-z0-9]{30,}"),
    ("npm-token", _word("npm_") + r"[A-Za-z0-9]{36}\b"),
    ("pypi-token", _word("pypi-") + r"[A-Za-z0-9_\-]{40,}"),
    ("mailgun-key", _word("key-") + r"[0-9a-f]{32}\b"),
    ("square-token", _word("sq0") + r"(?:atp|csp|idp)-[0-9A-Za-z_\-]{22,43}"),
    ("shopify-token", _word("shp") + r"(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b"),
    ("digitalocean-token", _word("do") + r"[por]_v1_[a-f0-9]{64}\b"),
    ("doppler-token", _word("dp.") + r"(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}\b"),
    ("discord-webhook", r"https://(?:\w+\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w\-]{20,}"),
    ("azure-storage-key", r"AccountKey=(?P<value>[A-Za-z0-9+/=]{20,})"),
    ("azure-sas", r"SharedAccess(?:Signature|Key)=(?P<value>[^;\s\"']{8,})"),
    ("azure-sas", r"sig=(?<=[?&]sig=)(?P<value>[A-Za-z0-9%+/=]{16,})"),
    (
        "authorization-header",
        r"(?i)uthorization[\"']?\s*[:=]\s*[\"']?(?:Basic|Bearer|Token|Bot|Digest)\s+"
        r"(?P<value>[A-Za-z0-9._~+/=\-]{8,})",
    ),
)

# --------------------------------------------------------------------------- assignments

# Names that make the value assigned to them a secret (`DB_PASSWORD`, `api-key`, `_authToken`).
_KEYWORD = (
    r"(?:PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API[_\-]?KEY|ACCESS[_\-]?KEY|SECRET[_\-]?KEY|"
    r"PRIVATE[_\-]?KEY|AUTH[_\-]?KEY|ACCOUNT[_\-]?KEY|CREDENTIALS?|_AUTH)"
)
# A whole name, for patterns anchored at a line's start (the others start at the keyword).
_KEY = rf"[A-Za-z0-9_.\-]{{0,40}}{_KEYWORD}"
_QUOTE = r"""\\?["']"""  # also JSON-escaped, inside a JSON string
# Values assigned to a secret's name; read on the lines that name a secret only.
_ASSIGNMENTS: tuple[str, ...] = (
    # `"password": "x"`, `API_KEY = 'x'`, `token: str = "x"`: the quoted value.
    rf"""(?i){_KEYWORD}{_QUOTE}?\s*(?::\s*[A-Za-z_][\w\[\]. |]*?\s*)?[:=]\s*"""
    rf"""(?P<quote>{_QUOTE})(?P<value>[^"'\n]{{4,}})(?P=quote)""",
    # `PASSWORD=x` (env, query strings).
    rf"""(?i){_KEYWORD}="""
    r"""(?P<value>[^\s"'`$#(){}\[\]<>,;&][^\s"'`#(){}\[\]<>,;&]{5,})(?=[\s"'`,;&]|$)""",
    # `password: x` (YAML: a key starting its line).
    rf"""(?i)^{_LINE_PREFIX}[ \t]*(?:- )?{_KEY}:[ \t]+"""
    r"""(?P<value>[^\s"'`$#(){}\[\]<>,;&][^\s"'`#(){}\[\]<>,;&]{5,})[ \t]*(?:#.*)?$""",
    # `password = x` (INI, .pypirc, TOML without quotes) to the end of the line.
    rf"""(?i)^{_LINE_PREFIX}[ \t]*{_KEY}[ \t]*=[ \t]*"""
    r"""(?P<value>[^\s"'`$#(){}\[\]<>,;.]{6,})[ \t]*$""",
    # .netrc: `machine h login u password p`, or `password p` alone on its line.
    r"""\b(?:machine|login)[ \t]+\S+[ \t][^\n]{0,200}?\bpassword[ \t]+(?P<value>\S+)""",
    rf"""^{_LINE_PREFIX}[ \t]*password[ \t]+(?P<value>\S+)[ \t]*$""",
)
# Credentials that need no name: `scheme://user:password@host` (also `redis://:pw@host`),
# and `curl -u user:password`.
_CREDENTIALS: tuple[str, ...] = (
    r"""://[^\s:/@]*:(?P<value>[^\s@/]+)@""",
    r"""-(?:u|-user)[ \t]+[^\s:\-][^\s:]*:(?P<value>[^\s"'`]+)""",
)
# Values that name a type or stand for nothing: `password: str`, `token = None`.
_NOT_SECRET_VALUES = frozenset(
    {"string", "str", "bytes", "int", "number", "bool", "boolean", "none", "null", "nil"}
    | {"true", "false", "required", "optional", "secretstr", "undefined"}
)


def _plausible(value: str) -> bool:
    """Whether a value found by a name or by entropy alone could be a secret, rather than
    a number, type, template, variable, prefix, regex or words."""
    from detect_secrets.filters.heuristic import is_not_alphanumeric_string, is_templated_secret

    if len(value) < 4 or value.isdigit() or value.lower() in _NOT_SECRET_VALUES:
        return False
    if value.startswith(("$", "{{", "%(", "#{")) or is_templated_secret(value):
        return False
    if is_not_alphanumeric_string(value) or value.endswith(("_", "-")):  # `"ghp_" + …`
        return False
    if ("[" in value and "]" in value) or _names_code(value):
        return False
    words = value.split()
    return len(words) < 3 and not (len(words) > 1 and all(word.isalpha() for word in words))


def _names_code(value: str) -> bool:
    """`self.key`, `in_memory`, `_private`, `DEFAULT`, or the name of a secret rather than
    one (`api_key=api_key`, `"GITHUB_TOKEN"`, `apiKey`, `password: SecretBytes`)."""
    if _DOTTED.match(value) or _SNAKE_CASE.match(value) or _CONSTANT.match(value):
        return True
    return _NAME.match(value) is not None and _names_a_secret(value)


def _placeholder(value: str) -> bool:
    """`sk-xxxxxxxxxxxxxxxx`, `AKIAXXXXXXXXXXXXXXXX`, `********`: half of it one character;
    `sk-...`, `ghp_…`: an ellipsis where the key would be (little else is left)."""
    shown = value.replace("...", "").replace("\u2026", "")
    if len(shown) < len(value) and len(shown) < PLACEHOLDER_REST:
        return True
    return Counter(value).most_common(1)[0][1] * 2 > len(value)


# An ellipsis with fewer characters than this beside it stands for a key (`sk-...`); a value
# that keeps more (`hunter...2024`) may be a real password and is still cut.
PLACEHOLDER_REST = 8
_NAME = re.compile(r"^(?:[A-Za-z]+|[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)$")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")
_SNAKE_CASE = re.compile(r"^[a-z]+(?:_[a-z]+)+$")
_CONSTANT = re.compile(r"^(?:_\w+|[A-Z]+)$")


# --------------------------------------------------------------------------- detectors


def load_detectors() -> None:
    """Load the detectors now (detect-secrets' imports), e.g. in a worker thread at start."""
    _detectors()


@cache
def _detectors() -> tuple[Detector, ...]:
    """Most specific first. Built on first use: importing detect-secrets takes ~0.3 s."""
    return (
        *(_regex_detector(kind, pattern) for kind, pattern in _FORMATS),
        *_plugin_detectors(),
        *(_regex_detector("secret-value", p, generic=True, named=True) for p in _ASSIGNMENTS),
        *(_regex_detector("secret-value", pattern, generic=True) for pattern in _CREDENTIALS),
        _keyword_detector(),
        *_entropy_detectors(),
    )


def _regex_detector(
    kind: str, pattern: str, *, generic: bool = False, named: bool = False
) -> Detector:
    compiled = re.compile(pattern, re.MULTILINE)
    takes_group = "value" in compiled.groupindex

    def find(text: str) -> Iterator[Found]:
        starts: list[int] = []
        for match in compiled.finditer(text):
            group = "value" if takes_group else 0
            starts = starts or _line_starts(text)
            yield Found(match.group(group), *_line_at(text, starts, match.start(group)))

    return Detector(kind, find, generic, named)


def _plugin_detectors() -> list[Detector]:
    """detect-secrets' format plugins, by their `analyze_string` (never `analyze_line`,
    which reads global settings and may verify a secret over the network)."""
    from detect_secrets.plugins import (
        artifactory,
        aws,
        discord,
        github_token,
        gitlab_token,
        jwt,
        mailchimp,
        pypi_token,
        sendgrid,
        slack,
        square_oauth,
        stripe,
        telegram_token,
        twilio,
    )

    # Left out: IPPublicDetector (an address is no credential); PrivateKeyDetector (it
    # reports the BEGIN line: whole keys are cut above); BasicAuthDetector (it takes a
    # `host:port/path@` for a password); AzureStorageKeyDetector (88 characters only, and it
    # reports the `AccountKey=` name with the key); the IBM, Cloudant and SoftLayer plugins
    # (a name and a value of some length: the assignments cover them, at a tenth the time);
    # NpmDetector and OpenAIDetector (their patterns take quadratic time on a long line with
    # many `//` or `sk-`, e.g. minified code; the npm and openai formats above cover theirs).
    plugins: tuple[tuple[str, RegexBasedDetector], ...] = (
        ("aws-key", aws.AWSKeyDetector()),
        ("artifactory-token", artifactory.ArtifactoryDetector()),
        ("discord-bot-token", discord.DiscordBotTokenDetector()),
        ("github-token", github_token.GitHubTokenDetector()),
        ("gitlab-token", gitlab_token.GitLabTokenDetector()),
        ("jwt", jwt.JwtTokenDetector()),
        ("mailchimp-key", mailchimp.MailchimpDetector()),
        ("pypi-token", pypi_token.PypiTokenDetector()),
        ("sendgrid-key", sendgrid.SendGridDetector()),
        ("slack-token", slack.SlackDetector()),
        ("square-oauth-secret", square_oauth.SquareOAuthDetector()),
        ("stripe-key", stripe.StripeDetector()),
        ("telegram-bot-token", telegram_token.TelegramBotTokenDetector()),
        ("twilio-key", twilio.TwilioKeyDetector()),
    )
    return [
        Detector(kind, _plugin_finder(plugin, _PLUGIN_HINTS.get(kind))) for kind, plugin in plugins
    ]


# Text one of a plugin's patterns needs, as written and (for patterns that ignore case) in
# lower case: a text holding none of it is not scanned. Some of these patterns start with an
# alternation or a class, which the regex engine tries at every position: without the
# hints their scans cost most of a redaction.
_PLUGIN_HINTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aws-key": (("A3T", "ABIA", "ACCA", "AKIA", "ASIA"), ("aws",)),
    "artifactory-token": (("AKC", "AP"), ()),
    "gitlab-token": (("gl", "GR1348941"), ()),
    "mailchimp-key": (("-us",), ()),
    "slack-token": ((), ("xox", "hooks.slack.com")),
    "stripe-key": (("k_live_",), ()),
}


def _plugin_finder(
    plugin: RegexBasedDetector, hints: tuple[tuple[str, ...], tuple[str, ...]] | None
) -> Finder:
    """Each match of the plugin's patterns that the plugin itself confirms (JWTs must
    decode); the secret is its longest group of 8 or more characters (some plugins capture
    just a prefix, like `ghp`), else the whole match. With `hints`, a text holding none of
    them is not scanned."""

    def find(text: str) -> Iterator[Found]:
        if hints is not None and not _holds_any(text, *hints):
            return
        for pattern in plugin.denylist:
            for match in pattern.finditer(text):
                if next(iter(plugin.analyze_string(match.group())), None) is not None:
                    groups = [group for group in match.groups() if group and len(group) >= 8]
                    yield Found(max(groups, key=len, default=match.group()))

    return find


def _holds_any(text: str, exact: tuple[str, ...], folded: tuple[str, ...]) -> bool:
    return any(hint in text for hint in exact) or any(hint in _lowered(text) for hint in folded)


@lru_cache(maxsize=2)
def _lowered(text: str) -> str:
    """`text` in lower case, made once for all the plugins that look at it."""
    return text.lower()


def _keyword_detector() -> Detector:
    """detect-secrets' keyword plugin, line by line: quoted values assigned to or compared
    with secret-sounding names (`pwd`, `db_pass`, `contraseña`, `"x" == password`…)."""
    from detect_secrets.filters.heuristic import is_indirect_reference
    from detect_secrets.plugins.keyword import DENYLIST_REGEX, KeywordDetector

    plugin = KeywordDetector()
    its_names = re.compile(DENYLIST_REGEX, re.IGNORECASE)

    def find(text: str) -> Iterator[Found]:
        for line in text.split("\n"):
            quoted = '"' in line or "'" in line or "`" in line
            if quoted and its_names.search(line):
                values = list(plugin.analyze_string(line))
                if values and not is_indirect_reference(line):  # `secret = get_secret()`
                    yield from (Found(value, line) for value in values)

    return Detector("secret-value", find, generic=True, named=True)


def _entropy_detectors() -> list[Detector]:
    """detect-secrets' entropy plugins, line by line: quoted base64 strings above 4.5 bits a
    character, hex strings above 3.0 (its defaults), unless a digest, id, UUID or sequence."""
    from detect_secrets.filters.heuristic import (
        is_likely_id_string,
        is_potential_uuid,
        is_sequential_string,
    )
    from detect_secrets.plugins.high_entropy_strings import (
        Base64HighEntropyString,
        HexHighEntropyString,
    )

    def looks_random(value: str, line: str) -> bool:
        if _DIGEST_PREFIX.match(value) or (_HEX.match(value) and len(value) in _DIGEST_LENGTHS):
            return False
        if not any(c.isdigit() for c in value) or _ID_KEY.search(line, 0, max(0, line.find(value))):
            return False  # a name (`"ClassName"`), or an id (`"id": "toolu_01…"`)
        return not (
            is_sequential_string(value)
            or is_potential_uuid(value)
            or is_likely_id_string(value, line)
        )

    def finder(plugin: HighEntropyStringsPlugin) -> Finder:
        shortest = 2**plugin.entropy_limit  # fewer characters cannot carry that entropy

        def high(value: str) -> bool:
            return plugin.calculate_shannon_entropy(value) > plugin.entropy_limit

        def find(text: str) -> Iterator[Found]:
            for line in text.split("\n"):
                if '"' in line or "'" in line:
                    for value in plugin.analyze_string(line):
                        if len(value) > shortest and looks_random(value, line) and high(value):
                            yield Found(value, line)

        return find

    plugins = (Base64HighEntropyString(limit=4.5), HexHighEntropyString(limit=3.0))
    return [Detector("high-entropy-string", finder(p), generic=True) for p in plugins]


_DIGEST_PREFIX = re.compile(r"^(?:sha(?:1|224|256|384|512)|md5)[-:_]", re.IGNORECASE)
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_ID_KEY = re.compile(r"""(?:\b[iI][dD]|_id|_ID|[a-z]Id)s?\\?["']?\s*[:=]\s*\\?["']$""")
_DIGEST_LENGTHS = frozenset({40, 64, 128})  # git object ids, SHA-1/256/512 digests
