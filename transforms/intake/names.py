"""Names from landing/ as they may be shown: every control character escaped.

A file name is chosen by whoever drops the file. A newline in it would forge a second log line,
and an ESC would drive the operator's terminal; so any name that reaches a message, a log line,
a report or the terminal goes through `printable` first.
"""

from __future__ import annotations

import unicodedata


def printable(name: object) -> str:
    """`name` with control, format and separator characters escaped as `\\n`, `\\x1b`, `\\u202e`.

    Idempotent (an escaped name has nothing left to escape), so every message-maker may apply
    it without knowing whether a caller already did."""
    text = str(name)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() and unicodedata.category(char) not in ("Cf", "Zl", "Zp"):
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)
