"""Split a bash script into whole commands, the way the shell would group its lines.

A command ends at a line break only when no quote, `$(`/subshell, `{ }` group, `if`/`for`/
`while`/`case` block or here-document is open and the line does not end in `\\`, `&&`, `||` or
`|`. So `python3 -c "` … `"` over many lines stays one command. Comment lines between commands
are dropped; lines inside an open command are kept as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_OPENERS = {"if": 1, "for": 1, "while": 1, "until": 1, "select": 1, "case": 1, "{": 1}
_CLOSERS = {"fi", "done", "esac", "}"}
_COMMAND_SEPARATORS = {";", "&&", "||", "|", "(", "&"}
_KEYWORD_SEPARATORS = {"then", "do", "else", "elif"}
"""Start a command only where they are keywords themselves (`echo do for` opens nothing)."""
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_CONTINUES = ("\\", "&&", "||", "|")


@dataclass
class _Scanner:
    quote: str | None = None
    parens: int = 0
    blocks: int = 0
    heredocs: list[tuple[str, bool]] = field(default_factory=list)
    in_heredoc: tuple[str, bool] | None = None
    continued: bool = False

    @property
    def complete(self) -> bool:
        return (
            self.quote is None
            and self.parens <= 0
            and self.blocks <= 0
            and not self.heredocs
            and self.in_heredoc is None
            and not self.continued
        )

    def feed(self, line: str) -> None:
        if self.in_heredoc is not None:
            delimiter, strip_tabs = self.in_heredoc
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                self.in_heredoc = self.heredocs.pop(0) if self.heredocs else None
            return
        code = self._scan(line)
        self._count_blocks(code)
        stripped = code.rstrip()
        self.continued = self.quote is None and stripped.endswith(_CONTINUES)
        if self.heredocs and self.quote is None:
            self.in_heredoc = self.heredocs.pop(0)

    def _scan(self, line: str) -> str:
        """Track quotes and parentheses; return the line's unquoted code with comments cut."""
        out: list[str] = []
        i, n = 0, len(line)
        while i < n:
            c = line[i]
            if self.quote in ("'",):
                if c == "'":
                    self.quote = None
                i += 1
                out.append(" ")
                continue
            if self.quote in ('"', "$'"):
                if c == "\\":
                    i += 2
                    continue
                if c == ("'" if self.quote == "$'" else '"'):
                    self.quote = None
                i += 1
                out.append(" ")
                continue
            if c == "\\":
                if i == n - 1:
                    out.append("\\")
                i += 2
                out.append(" ")
                continue
            if c == "#" and (i == 0 or line[i - 1] in " \t;&|("):
                break
            heredoc = _HEREDOC.match(line, i) if line.startswith("<<", i) else None
            if heredoc and not line.startswith("<<<", i):
                self.heredocs.append((heredoc.group(3), heredoc.group(1) == "-"))
                out.append(" ")
                i = heredoc.end()
                continue
            if c == "'":
                self.quote = "$'" if i > 0 and line[i - 1] == "$" else "'"
            elif c == '"':
                self.quote = '"'
            elif c == "(":
                self.parens += 1
            elif c == ")":
                self.parens = max(0, self.parens - 1)
            out.append(c)
            i += 1
        return "".join(out)

    def _count_blocks(self, code: str) -> None:
        words = re.findall(r"&&|\|\||[;|&()]|[^\s;|&()]+", code)
        at_command = True
        previous = ""
        for word in words:
            if at_command and word in _OPENERS:
                self.blocks += 1
            elif at_command and word in _CLOSERS:
                self.blocks = max(0, self.blocks - 1)
            at_command = (
                word in _COMMAND_SEPARATORS
                or (at_command and (word in _OPENERS or word in _KEYWORD_SEPARATORS))
                or (word == ")" and previous == "(")  # `name() {`: the body starts a command
            )
            previous = word


def split_commands(script: str, first_line: int = 1) -> list[tuple[str, int]]:
    """Return `(command, line)` pairs; `line` is where each command starts (1-based)."""
    commands: list[tuple[str, int]] = []
    buffer: list[str] = []
    start = first_line
    scanner = _Scanner()
    for offset, line in enumerate(script.split("\n")):
        if not buffer:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = first_line + offset
        buffer.append(line)
        scanner.feed(line)
        if scanner.complete:
            commands.append(("\n".join(buffer).strip(), start))
            buffer, scanner = [], _Scanner()
    if buffer:
        commands.append(("\n".join(buffer).strip(), start))
    return commands
