"""The fenced blocks of README.md and docs/*.md, and the commands in them (tests/*/test_docs*.py).

Every block is checked by its kind (see tests/unit/test_docs.py) unless an HTML comment right
above its fence (blank lines allowed between) says how, with a reason where it checks less:

    <!-- docs-test: skip: REASON -->            nothing is checked (keep these few)
    <!-- docs-test: compile-only: REASON -->    a Python block is compiled, not run
    <!-- docs-test: file graphs/x/y.py -->      a Python block is that file of a scratch repository
    <!-- docs-test: package graphs.digits -->   a Python block runs as a module of that package
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DIRECTIVES = ("skip", "compile-only", "file", "package")

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*([\w-]+)\s*:?\s*(.*?)\s*-->")
_SUBSTITUTION = re.compile(r"\$\([^()]*\)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
OPERATORS = {"&&", "||", ";", "|", "&"}


def _shown(page: Path) -> str:
    return str(page.relative_to(REPO)) if page.is_relative_to(REPO) else str(page)


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its info string, its text and its docs-test directives."""

    page: Path
    line: int
    kind: str
    text: str
    directives: tuple[tuple[str, str], ...] = ()

    @property
    def where(self) -> str:
        """``page:line`` of the opening fence, relative to the repository."""
        return f"{_shown(self.page)}:{self.line}"

    def directive(self, name: str) -> str | None:
        """The argument of directive ``name`` above this block (``""`` without one), or None."""
        return next((arg for verb, arg in self.directives if verb == name), None)

    @property
    def skipped(self) -> bool:
        return self.directive("skip") is not None


@dataclass(frozen=True)
class Command:
    """One simple command of a shell block (``a && b | c`` holds three), variables stripped."""

    argv: tuple[str, ...]
    block: Block
    line: int

    @property
    def where(self) -> str:
        return f"{_shown(self.block.page)}:{self.line}"

    def __str__(self) -> str:
        return shlex.join(self.argv)


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with the docs-test directives written above it."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, kind = opening.groups()
        above: list[tuple[str, str]] = []
        j = i - 1
        while j >= 0 and (not lines[j].strip() or _DIRECTIVE.search(lines[j])):
            above += [(m[1], m[2]) for m in _DIRECTIVE.finditer(lines[j])]
            j -= 1
        end = next(
            (k for k in range(i + 1, len(lines)) if lines[k].strip().startswith(fence)), len(lines)
        )
        body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
        for verb, _ in above:
            assert verb in DIRECTIVES, f"{page.name}:{i + 1}: unknown docs-test directive {verb}"
        found.append(Block(page, i + 1, kind, "\n".join(body) + "\n", tuple(reversed(above))))
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    """The fenced blocks of every page."""
    return [b for page in PAGES for b in blocks(page)]


def commands(block: Block) -> list[Command]:
    """The commands of a shell block: every line of ``bash``, the ``$ `` lines of ``console``.

    Continuation lines are joined, comments dropped, ``$(...)`` replaced by one word, ``A=b``
    prefixes dropped; ``&&``, ``||``, ``;``, ``|`` and ``&`` separate commands.
    """
    found: list[Command] = []
    logical: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for offset, raw in enumerate(block.text.splitlines()):
        if block.kind == "console" and not pending:
            if not raw.startswith("$ "):
                continue
            raw = raw[2:]
        if not pending:
            start = block.line + 1 + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        logical.append((start, pending + raw))
        pending = ""
    for line_no, line in logical:
        text = line
        while _SUBSTITUTION.search(text):
            text = _SUBSTITUTION.sub("SUBSTITUTED", text)
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in OPERATORS:
                while words and _ASSIGNMENT.match(words[0]):
                    words.pop(0)
                if words:
                    found.append(Command(tuple(words), block, line_no))
                words = []
            else:
                words.append(token)
    return found


@dataclass(frozen=True)
class NoxSession:
    """A session of the noxfile and, when it forwards its arguments to a command, that command."""

    name: str
    program: str | None
    prefix: tuple[str, ...]


@cache
def nox_sessions() -> dict[str, NoxSession]:
    """The noxfile's sessions, read from its source (nox itself is not in the dev environment)."""
    tree = ast.parse((REPO / "noxfile.py").read_text())
    sessions: dict[str, NoxSession] = {}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for decorator in fn.decorator_list:
            if not (
                isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "nox.session"
            ):
                continue
            name = next(
                (k.value.value for k in decorator.keywords if k.arg == "name"),  # type: ignore[attr-defined]
                fn.name,
            )
            program, prefix = None, ()
            for call in ast.walk(fn):
                if isinstance(call, ast.Call) and ast.unparse(call.func) == "_run":
                    literal = [a.value for a in call.args[1:] if isinstance(a, ast.Constant)]
                    if any(isinstance(a, ast.Starred) for a in call.args):
                        program, prefix = literal[0], tuple(literal[1:])
            sessions[name] = NoxSession(name, program, prefix)
    return sessions


def argparse_options(module: str) -> set[str]:
    """The option strings a module's ``add_argument`` calls declare (its argparse CLI)."""
    path = REPO / Path(*module.split(".")).with_suffix(".py")
    options: set[str] = set()
    for call in ast.walk(ast.parse(path.read_text())):
        if isinstance(call, ast.Call) and ast.unparse(call.func).endswith("add_argument"):
            options |= {
                a.value
                for a in call.args
                if isinstance(a, ast.Constant) and str(a.value).startswith("-")
            }
    return options
