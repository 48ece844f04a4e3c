"""The shell blocks of the README and docs/*.md, as the doc test runs them. Pure: text in, blocks out.

Convention (explained to writers in docs/loadtest.md, "Docs that are tests"):

- every fenced block opened by a line that is exactly ```` ```bash ```` is run, in file order;
- unless the line right before the fence is ``<!-- not-run: REASON -->`` (a real cluster, the suite itself,
  a long benchmark): such a block is listed with its reason and not run;
- each ``<!-- expect: TEXT -->`` line right after the closing fence (one or more, consecutive) names text that
  must appear in the block's output (stdout and stderr together).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_OPEN = re.compile(r"^```bash\s*$")
_CLOSE = re.compile(r"^```\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.+?)\s*-->\s*$")
_EXPECT = re.compile(r"^<!--\s*expect:\s*(.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: str
    line: int
    """1-based line of the opening fence"""
    code: str
    not_run: str | None = None
    """why the block is not run; None: it is run"""
    expects: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"


class DocFormatError(ValueError):
    """A document breaks the convention (an unclosed fence, an empty reason): the message names the line."""


def extract_blocks(path: str, text: str) -> list[Block]:
    """The ```bash blocks of one document, in order, with their markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not _OPEN.match(lines[i]):
            i += 1
            continue
        start = i
        marker = _NOT_RUN.match(lines[i - 1]) if i > 0 else None
        j = i + 1
        while j < len(lines) and not _CLOSE.match(lines[j]):
            j += 1
        if j == len(lines):
            raise DocFormatError(f"{path}:{start + 1}: ```bash block is never closed")
        code = "\n".join(lines[start + 1 : j]) + "\n"
        expects = []
        k = j + 1
        while k < len(lines) and (m := _EXPECT.match(lines[k])):
            expects.append(m.group(1))
            k += 1
        if marker is not None and expects:
            raise DocFormatError(f"{path}:{start + 1}: a not-run block cannot expect output")
        blocks.append(Block(path, start + 1, code, marker.group(1) if marker else None, tuple(expects)))
        i = k
    return blocks
