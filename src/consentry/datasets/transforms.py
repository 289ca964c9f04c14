"""Transforms applied to released records: author pseudonyms and personal-data placeholders.

Pseudonym of an author = the 64-bit keyed BLAKE2b digest of the account id (8 big-endian bytes), keyed
with the recipient's secret, read as a signed 64-bit integer: stable across that recipient's releases,
unlinkable across recipients without the secrets. An integer rather than a hex string keeps the column
compact and cheap to write and to group by; two authors share a pseudonym with probability about
n^2 / 2^65 (3e-8 for a million authors), which would only merge them, never reveal them.

For third parties, e-mail addresses and phone numbers in texts become ``[email]`` and
``[phone]``. The patterns use no backslashes, so DuckDB (RE2) and Spark (Java) read the same text.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

PSEUDONYM_SCHEME = (
    "int64 of the 8-byte BLAKE2b digest, keyed with the recipient's secret, "
    "of the 8-byte big-endian account id"
)
PERSON = b"consentry-author"

EMAIL_PATTERN = "[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:[.][A-Za-z0-9-]+)*[.][A-Za-z]{2,}"
PHONE_PATTERN = (
    "[+][0-9]{1,3}(?:[ .-]?[(]?[0-9]{1,4}[)]?){2,5}"
    "|[(][0-9]{3}[)] ?[0-9]{3}[ .-][0-9]{4}"
    "|[0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}"
)
EMAIL_PLACEHOLDER = "[email]"
PHONE_PLACEHOLDER = "[phone]"


def pseudonym(account_id: int, secret: bytes) -> int:
    """The pseudonym of one author for the recipient holding ``secret``."""
    digest = hashlib.blake2b(
        int(account_id).to_bytes(8, "big", signed=True), key=secret, digest_size=8, person=PERSON
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def pseudonyms(ids: np.ndarray, secret: bytes) -> np.ndarray:
    """Pseudonyms of many authors (int64, in the order of ``ids``)."""
    base = hashlib.blake2b(key=secret, digest_size=8, person=PERSON)
    raw = np.asarray(ids, dtype=">i8").tobytes()
    out = bytearray(len(raw))
    for start in range(0, len(raw), 8):
        digest = base.copy()
        digest.update(raw[start : start + 8])
        out[start : start + 8] = digest.digest()
    return np.frombuffer(bytes(out), dtype=">i8").astype(np.int64)


def scrub_sql(expression: str, *, engine: str) -> str:
    """SQL replacing e-mail addresses, then phone numbers, in ``expression`` (DuckDB needs the ``g``
    flag to replace every match; Spark always does)."""
    flags = ", 'g'" if engine == "duckdb" else ""
    email = f"regexp_replace({expression}, '{EMAIL_PATTERN}', '{EMAIL_PLACEHOLDER}'{flags})"
    return f"regexp_replace({email}, '{PHONE_PATTERN}', '{PHONE_PLACEHOLDER}'{flags})"


def scrub_text(text: str) -> str:
    """The Python form of the same replacement (for callers outside the engines)."""
    return re.sub(PHONE_PATTERN, PHONE_PLACEHOLDER, re.sub(EMAIL_PATTERN, EMAIL_PLACEHOLDER, text))
