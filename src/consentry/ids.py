"""Ids as the API accepts them: integers within the range of the column that stores them.

Every path, query and body parameter that names a stored row uses one of these types, so a number no
column can hold is refused with 422 before any query runs (SQLite raises ``OverflowError`` beyond 64
bits, PostgreSQL ``integer out of range`` beyond the column's width)::

    Id64   accounts, posts, assistant interactions, ledger sequence numbers, revocations, tree sizes
           (BIGINT)
    Id32   policy versions, organisations and their keys and networks, recipients, partner keys,
           build jobs, retention runs (INTEGER)

``parse_id`` does the same for ids given inside text (``"org:12"``, a key named by id or prefix).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

Id64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""An id stored in a 64-bit column."""
Id32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]
"""An id stored in a 32-bit column."""


def parse_id(text: str, *, bits: int = 32) -> int | None:
    """The id ``text`` spells in ASCII digits, or ``None`` if it spells none that a ``bits``-wide column
    can hold (other characters, Unicode digits such as ``"²"``, or too large)."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= 2 ** (bits - 1) - 1 else None
