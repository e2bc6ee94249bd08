"""Turning commands-as-data into host script text: quoting, shell variables, generated headers, static bodies.

A host script is a generated header (shell assignments of the parameters, each quoted with `shlex`, and small
shell functions built from the docker argv builders) followed by a static body from `commands/scripts/*.sh`.
Every script runs under bash (`exec bash -c …`): the bodies need bash's literal string replacement to scrub env
values out of logs and to escape JSON, and the transports run `sh -c`. No I/O library here: the bodies are
package data, read once.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

# Shell variable and function names we generate: anything else would be a quoting bug waiting to happen.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Var:
    """A value only the host knows when the command runs (a free port, a container id): `"${name}"`.

    `prefix` is literal text glued in front, for words such as `PORT=$port` (`--env PORT="${port}"`).
    """

    name: str
    prefix: str = ""

    def __post_init__(self) -> None:
        if not (_NAME.match(self.name) or self.name.isdigit()):
            raise ValueError(f"{self.name!r} is not a shell variable name")

    def render(self) -> str:
        expansion = f'"${{{self.name}}}"'
        return f"{shlex.quote(self.prefix)}{expansion}" if self.prefix else expansion


Word = str | Var
"""One argv element: literal text (quoted on rendering) or a host-side shell variable."""


def render_word(word: Word) -> str:
    return word.render() if isinstance(word, Var) else shlex.quote(word)


def join(argv: Sequence[Word]) -> str:
    """One shell command line from an argv list: literals quoted with shlex, variables double-quoted."""
    return " ".join(render_word(word) for word in argv)


def assignments(values: Mapping[str, str | int | float]) -> str:
    """`name='value'` lines, one per parameter, in the given order."""
    lines = []
    for name, value in values.items():
        _check_name(name)
        text = f"{value:g}" if isinstance(value, float) else str(value)
        if "\0" in text:
            raise ValueError(f"parameter {name} contains a NUL byte, which no shell can carry")
        lines.append(f"{name}={shlex.quote(text)}")
    return "\n".join(lines) + "\n"


def array(name: str, values: Iterable[str]) -> str:
    """A bash array assignment: `name=('a' 'b')`."""
    _check_name(name)
    return f"{name}=({' '.join(shlex.quote(value) for value in values)})\n"


def function(name: str, commands: Sequence[Sequence[Word]], comment: str) -> str:
    """A shell function running `commands` in order; `comment` says what its positional arguments are."""
    _check_name(name)
    body = "".join(f"  {join(argv)}\n" for argv in commands)
    return f"# {comment}\n{name}() {{\n{body}}}\n"


@cache
def body(name: str) -> str:
    """The static shell body `commands/scripts/<name>.sh` (package data)."""
    return resources.files("deploymind.commands").joinpath("scripts", f"{name}.sh").read_text(encoding="utf-8")


def heredoc(path_expr: str, content: str) -> str:
    """A command writing `content` verbatim (no expansion) to the file `path_expr` (shell text, e.g. "$f")."""
    marker = "DM_END"
    while marker in content:
        marker += "_"
    return f"cat > {path_expr} <<'{marker}'\n{content}{'' if content.endswith(chr(10)) else chr(10)}{marker}\n"


def bash(script: str) -> str:
    """The text a transport runs with `sh -c`: it hands `script` to bash (stdin passes through untouched)."""
    return f"exec bash -c {shlex.quote(script)} deploymind\n"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a shell name")
