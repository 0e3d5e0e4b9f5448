# SPDX-License-Identifier: GPL-2.0-only
"""Line cursor and number parsing shared by the /proc parsers.

Every parser reads a file top to bottom knowing which line must come next, so one cursor
that numbers lines and raises :class:`ProcFormatError` with ``path:line: problem`` keeps
the error messages uniform. Each parser also renders every line it accepted and compares
it with the input: that one check rejects stray spaces, missing padding, ``+1``, ``007``
and the like without a regex per quirk, and is what makes render(parse(text)) == text
hold for anything the parser accepts.
"""

from __future__ import annotations

import re

from pagesim.procfs.types import ProcFormatError

_UNSIGNED = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"-?[0-9]+")


class Lines:
    """The lines of one file, with a cursor; line numbers are 1-based."""

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        if text == "":
            raise ProcFormatError(path, 1, "empty file")
        if not text.endswith("\n"):
            last = text.count("\n") + 1
            raise ProcFormatError(
                path, last, "last line has no newline: the file is truncated")
        self.lines = text[:-1].split("\n")
        self.pos = 0  # index of the next line to read

    @property
    def lineno(self) -> int:
        """Line number of the next line (one past the end at end of file)."""
        return self.pos + 1

    def at_end(self) -> bool:
        return self.pos >= len(self.lines)

    def peek(self) -> str | None:
        return None if self.at_end() else self.lines[self.pos]

    def take(self, expected: str) -> str:
        """The next line; at end of file, an error naming what was ``expected``."""
        if self.at_end():
            raise self.error(f"unexpected end of file: expected {expected}")
        line = self.lines[self.pos]
        self.pos += 1
        return line

    def error(self, problem: str, lineno: int | None = None) -> ProcFormatError:
        return ProcFormatError(self.path, self.lineno if lineno is None else lineno, problem)

    def last_error(self, problem: str) -> ProcFormatError:
        """An error about the line just taken."""
        return ProcFormatError(self.path, self.pos, problem)

    def check(self, line: str, canonical: str) -> None:
        """Raise unless the line just taken is exactly what the kernel would print."""
        if line != canonical:
            raise self.last_error(
                f"line does not match the kernel's format: got {line!r}, "
                f"expected {canonical!r}")


def unsigned(lines: Lines, token: str, what: str) -> int:
    """A ``%lu``/``%u`` value of the line just taken."""
    if not _UNSIGNED.fullmatch(token):
        raise lines.last_error(f"{what}: expected an unsigned number, got {token!r}")
    return int(token)


def signed(lines: Lines, token: str, what: str) -> int:
    """A ``%d``/``%i``/``%ld`` value of the line just taken."""
    if not _SIGNED.fullmatch(token):
        raise lines.last_error(f"{what}: expected a number, got {token!r}")
    return int(token)


def labelled(lines: Lines, prefix: str, name: str, *, is_signed: bool = False) -> int:
    """The next line, made of a fixed label and one number."""
    line = lines.take(f"the {prefix.strip()!r} line")
    if not line.startswith(prefix):
        raise lines.last_error(f"unexpected line {line!r}: expected {prefix.strip()!r}")
    token = line[len(prefix):]
    value = signed(lines, token, name) if is_signed else unsigned(lines, token, name)
    lines.check(line, f"{prefix}{value}")
    return value
