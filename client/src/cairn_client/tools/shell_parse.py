"""A shell command line as bash would read it, through the tree-sitter bash grammar.

Owns turning a command string into its simple commands (words, assignments, redirections,
wherever they sit: chains, pipes, substitutions, subshells) and the facts about the whole.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

# Words that run the rest of the command line as a command of its own.
WRAPPERS = frozenset(
    {"sudo", "doas", "nohup", "time", "exec", "command", "nice", "env", "timeout", "stdbuf"}
    | {"ionice", "setsid", "chrt", "taskset", "xargs", "builtin", "unbuffer", "caffeinate"}
)
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish", "busybox"})
# Node types that make words whose value is only known when the command runs.
_DYNAMIC = frozenset(
    {"simple_expansion", "expansion", "command_substitution", "process_substitution"}
    | {"arithmetic_expansion", "ansi_c_string", "translated_string", "brace_expression"}
)
_SUBSTITUTIONS = frozenset({"command_substitution", "process_substitution"})
# Statements that are more than commands joined by &&, ||, ; and |.
_CONTROL = frozenset(
    {"subshell", "compound_statement", "if_statement", "while_statement", "for_statement"}
    | {"c_style_for_statement", "case_statement", "function_definition", "negated_command"}
    | {"test_command", "declaration_command", "unset_command", "variable_assignment"}
    | {"variable_assignments"}
)
_PATTERN_CHARS = re.compile(r"[*?\[{]")
_ENV_OPTION_WITH_VALUE = frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"})
_OPTIONS_WITH_VALUE = {
    "timeout": frozenset({"-s", "--signal", "-k", "--kill-after"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "sudo": frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"}),
    "doas": frozenset({"-u", "-C"}),
    "xargs": frozenset({"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--delimiter"}),
    "ionice": frozenset({"-c", "-n", "-p"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
}


@dataclass(frozen=True)
class Word:
    """One word of a command: its value when fixed before the command runs, else None."""

    text: str  # as written
    value: str | None  # quotes removed and escapes applied; None when it expands
    pattern: bool = False  # unquoted * ? [ or {: the shell may turn it into other words

    @property
    def shown(self) -> str:
        return self.value if self.value is not None else self.text


@dataclass(frozen=True)
class Redirect:
    operator: str  # ">", ">>", "<", "&>", ">&", "<<", "<<<", ...
    target: Word | None  # None for a here-document
    descriptor: str | None = None  # the "2" of 2>

    @property
    def writes(self) -> bool:
        return ">" in self.operator

    @property
    def duplicates(self) -> bool:
        """`2>&1`, `>&2`: points one descriptor at another, opens no file."""
        value = self.target.value if self.target else None
        return self.operator in (">&", "<&") and value is not None and value.isdigit()


@dataclass
class SimpleCommand:
    """One command of a line: its words, the assignments before it and its redirections."""

    words: list[Word] = field(default_factory=list)
    assignments: list[str] = field(default_factory=list)  # `NAME=value` as written
    redirects: list[Redirect] = field(default_factory=list)
    text: str = ""  # the command as written, without its redirections
    piped_into: bool = False  # its stdin is the previous command's stdout
    nested: bool = False  # inside $( ), <( ), a subshell, a function or a control statement
    elevated: bool = False  # (after `unwrapped`) run through sudo or doas

    @property
    def name(self) -> str:
        return os.path.basename(self.words[0].shown) if self.words else ""

    @property
    def args(self) -> list[str]:
        return [word.shown for word in self.words[1:]]

    @property
    def writes_to(self) -> list[str]:
        return [
            r.target.shown
            for r in self.redirects
            if r.writes and r.target is not None and not r.duplicates
        ]

    @property
    def reads_from(self) -> list[str]:
        return [
            r.target.shown
            for r in self.redirects
            if not r.writes and r.target is not None and not r.duplicates
        ]

    @property
    def static(self) -> bool:
        """Every word known before it runs, and no word the shell may split or glob."""
        return all(word.value is not None and not word.pattern for word in self.words)

    def unwrapped(self) -> SimpleCommand:
        """The command that `sudo`, `env X=1`, `timeout 5`, `xargs`… finally run, with the
        assignments and wrapper words dropped (the command itself if it has none)."""
        words = _strip_wrappers(self.words)
        if len(words) == len(self.words):
            return self
        wrappers = self.words[: len(self.words) - len(words)]
        return SimpleCommand(
            words=words,
            redirects=self.redirects,
            text=" ".join(word.text for word in words),
            piped_into=self.piped_into,
            nested=self.nested,
            elevated=any(os.path.basename(w.shown) in ("sudo", "doas") for w in wrappers),
        )


@dataclass
class ShellScript:
    """A parsed command line: its simple commands and what else it does."""

    source: str
    commands: list[SimpleCommand]
    errors: bool = False  # bash would not accept it as written (unbalanced quotes, …)
    control: bool = False  # subshells, functions, if/while/for, `!`, [[ ]], export…
    background: bool = False  # a command sent to the background with &
    substitutions: bool = False  # $( ), ` `, <( ) or >( )
    expansions: bool = False  # $VAR, ${…}, $(( )), $'…' anywhere
    heredocs: bool = False

    @property
    def compound(self) -> bool:
        """More than one plain command: a chain, a pipe, a substitution, a redirection…"""
        return (
            len(self.commands) != 1
            or self.control
            or self.background
            or self.substitutions
            or bool(self.commands[0].redirects)
            or self.heredocs
        )


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bash.language()))


@lru_cache(maxsize=512)
def parse_shell(command: str) -> ShellScript:
    """The simple commands of `command` in the order bash meets them, and its facts."""
    source = command.encode("utf-8", errors="surrogateescape")
    tree = _parser().parse(source)
    script = ShellScript(source=command, commands=[], errors=tree.root_node.has_error)
    _walk(tree.root_node, script, source, nested=False, piped=False)
    return script


def unwrapped_commands(script: ShellScript, depth: int = 0) -> list[SimpleCommand]:
    """Every command the line may run: wrappers removed, `sh -c '…'` and `eval …` opened."""
    found: list[SimpleCommand] = []
    for simple in script.commands:
        inner = simple.unwrapped()
        found.append(inner)
        nested = _inline_script(inner)
        if nested is not None and depth < 3:
            found += unwrapped_commands(parse_shell(nested), depth + 1)
    return found


def _inline_script(simple: SimpleCommand) -> str | None:
    """The script text of `bash -c 'x'` or `eval x y`, when the line has one."""
    args = simple.args
    if simple.name in SHELLS:
        for index, arg in enumerate(args):
            if arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]:
                return args[index + 1] if index + 1 < len(args) else None
        return None
    if simple.name == "eval":
        return " ".join(args)
    return None


# --------------------------------------------------------------------------- walking


def _walk(node: Node, script: ShellScript, source: bytes, *, nested: bool, piped: bool) -> None:
    kind = node.type
    if kind == "command":
        script.commands.append(_command(node, source, nested=nested, piped=piped))
        _note_words(node, script, source)
        return
    if kind == "redirected_statement":
        _redirected(node, script, source, nested=nested, piped=piped)
        return
    if kind in _SUBSTITUTIONS:
        script.substitutions = True
    if kind in _CONTROL:
        script.control = True
    if kind in _DYNAMIC:
        script.expansions = True
    if kind in ("heredoc_redirect", "herestring_redirect"):
        script.heredocs = True
    inner_nested = nested or kind in _CONTROL or kind in _SUBSTITUTIONS
    after_pipe = False
    for child in node.children:
        if not child.is_named:
            token = _text(child, source)
            if token == "&" and kind in ("program", "list", "compound_statement", "subshell"):
                script.background = True
            after_pipe = token in ("|", "|&") and kind == "pipeline"
            continue
        _walk(child, script, source, nested=inner_nested, piped=after_pipe)
        after_pipe = False


def _redirected(
    node: Node, script: ShellScript, source: bytes, *, nested: bool, piped: bool
) -> None:
    body = node.child_by_field_name("body")
    redirects = [_redirect(child, source) for child in node.children_by_field_name("redirect")]
    if any(r.target is None for r in redirects):
        script.heredocs = True
    for child in node.children_by_field_name("redirect"):
        _note_words(child, script, source)
    before = len(script.commands)
    if body is not None:
        _walk(body, script, source, nested=nested, piped=piped)
    if body is None or body.type != "command":
        script.control = True  # `{ …; } > f`, `while …; done < f`: redirects a group
    if len(script.commands) > before:
        script.commands[before].redirects += redirects
    else:
        script.commands.append(SimpleCommand(redirects=redirects, nested=nested, piped_into=piped))


def _command(node: Node, source: bytes, *, nested: bool, piped: bool) -> SimpleCommand:
    simple = SimpleCommand(nested=nested, piped_into=piped)
    for child in node.named_children:
        if child.type == "variable_assignment":
            simple.assignments.append(_text(child, source))
        elif child.type == "file_redirect" or child.type.endswith("_redirect"):
            simple.redirects.append(_redirect(child, source))
        elif child.type == "command_name":
            simple.words.append(_word(child.named_children[0], source))
        else:
            simple.words.append(_word(child, source))
    name = node.child_by_field_name("name")
    start = name.start_byte if name is not None else node.start_byte
    simple.text = source[start : node.end_byte].decode("utf-8", errors="replace")
    return simple


def _redirect(node: Node, source: bytes) -> Redirect:
    if node.type != "file_redirect":
        return Redirect(operator="<<" if node.type == "heredoc_redirect" else "<<<", target=None)
    descriptor = node.child_by_field_name("descriptor")
    destination = node.child_by_field_name("destination")
    operator = next(
        (_text(c, source) for c in node.children if not c.is_named and _text(c, source).strip()),
        ">",
    )
    return Redirect(
        operator=operator,
        target=_word(destination, source) if destination is not None else None,
        descriptor=_text(descriptor, source) if descriptor is not None else None,
    )


def _note_words(node: Node, script: ShellScript, source: bytes) -> None:
    """Record substitutions and expansions inside a command's words, and walk the commands
    that substitutions run."""
    for child in node.named_children:
        if child.type in _SUBSTITUTIONS:
            script.substitutions = True
            for inner in child.named_children:
                _walk(inner, script, source, nested=True, piped=False)
        elif child.type in _DYNAMIC:
            script.expansions = True
            _note_words(child, script, source)
        elif child.type in ("heredoc_redirect", "herestring_redirect"):
            script.heredocs = True
            _note_words(child, script, source)
        else:
            _note_words(child, script, source)


# --------------------------------------------------------------------------- words


def _word(node: Node, source: bytes) -> Word:
    text = _text(node, source)
    value, pattern = _value(node, source)
    return Word(text=text, value=value, pattern=pattern)


def _value(node: Node, source: bytes) -> tuple[str | None, bool]:
    """The word's value if no expansion is needed, and whether it is an unquoted pattern."""
    kind = node.type
    text = _text(node, source)
    if kind in ("word", "number"):
        return _unescape(text), bool(_PATTERN_CHARS.search(_unquoted_specials(text)))
    if kind == "raw_string":
        return text[1:-1], False
    if kind == "string":
        if any(child.type != "string_content" for child in node.named_children):
            return None, False
        return _unescape_double(text[1:-1]), False
    if kind == "concatenation":
        parts = [_value(child, source) for child in node.named_children]
        if any(value is None for value, _ in parts):
            return None, any(pattern for _, pattern in parts)
        return "".join(value or "" for value, _ in parts), any(p for _, p in parts)
    return None, False


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL).replace("\\\n", "")


def _unescape_double(text: str) -> str:
    return re.sub(r'\\([$`"\\\n])', lambda m: "" if m.group(1) == "\n" else m.group(1), text)


def _unquoted_specials(text: str) -> str:
    """`text` without its backslash-escaped characters (they are literal)."""
    return re.sub(r"\\.", "", text)


def _strip_wrappers(words: list[Word]) -> list[Word]:
    """`words` from the first one that is not a wrapper, its options or an assignment."""
    index = 0
    while index < len(words):
        name = os.path.basename(words[index].shown)
        if name not in WRAPPERS:
            break
        index += 1
        takes_value = _OPTIONS_WITH_VALUE.get(name, frozenset())
        if name == "env":
            takes_value = _ENV_OPTION_WITH_VALUE
        while index < len(words):
            word = words[index].shown
            if word == "--":
                index += 1
                break
            if name == "env" and "=" in word and not word.startswith("-"):
                index += 1
            elif word.startswith("-") and len(word) > 1:
                index += 2 if word in takes_value else 1
            elif name == "timeout" and re.fullmatch(r"[\d.]+[smhd]?", word):
                index += 1
            else:
                break
    return words[index:]


def _text(node: Node, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")
