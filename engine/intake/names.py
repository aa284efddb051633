"""File names as they may be shown to a person or written to a log.

A name comes from whoever sent the file. Shown raw, a newline in it starts a line of its
own ("x.jpg: accepted"), a right-to-left override turns "gpj.exe" around, an escape
sequence drives the terminal, and a name of undecodable bytes cannot even be printed.
`shown_name` makes every such character visible as an escape and keeps names short;
nothing is ever stored under a name taken from an upload.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_SHOWN", "shown_name"]

# Longer names keep their start and their end (the extension), joined by an ellipsis: a
# chat message of verdicts must stay within the platform's length limit.
MAX_SHOWN = 80
# Control, format (bidirectional overrides, zero-width), line and paragraph separators,
# surrogates (undecodable bytes of a POSIX name), private use and unassigned code points.
_HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown_name(name: str, limit: int | None = MAX_SHOWN) -> str:
    """`name` on one line, every invisible or line-breaking character as an escape, and at
    most `limit` characters (None: a path the person typed, shown whole)."""
    shown = "".join(_visible(ch) for ch in name)
    if limit is not None and len(shown) > limit:
        half = (limit - 1) // 2
        shown = f"{shown[:half]}…{shown[-half:]}"
    return shown


def _visible(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    if unicodedata.category(ch) not in _HIDDEN:
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
