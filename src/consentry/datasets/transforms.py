"""Transforms applied to released records: author pseudonyms and personal-data placeholders.

Pseudonym of an author = the first 8 bytes of the AES-256 encryption of one block (the account id as 8
big-endian bytes, then the 8 bytes ``consentr``) under a key derived from the recipient's secret
(``BLAKE2b(secret, person="consentry-author")``, 32 bytes), read as a signed 64-bit integer: a keyed
pseudorandom function, stable across that recipient's releases, unlinkable across recipients without
the secrets. One cipher call does a million authors in milliseconds and leaves the interpreter free for
the rest of the build. An integer rather than a hex string keeps the column
compact and cheap to write and to group by; two authors share a pseudonym with probability about
n^2 / 2^65 (3e-8 for a million authors), which would only merge them, never reveal them.

For third parties, e-mail addresses and phone numbers in texts become ``[email]`` and
``[phone]``. The patterns use no backslashes, so DuckDB (RE2) and Spark (Java) read the same text.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PSEUDONYM_SCHEME = (
    "int64 of the first 8 bytes of AES-256 (key: 32-byte BLAKE2b of the recipient's secret, "
    "person 'consentry-author') of the 8-byte big-endian account id followed by b'consentr'"
)
PERSON = b"consentry-author"
SUFFIX = int.from_bytes(b"consentr", "big", signed=True)

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
    return int(pseudonyms(np.array([account_id], dtype=np.int64), secret)[0])


def pseudonyms(ids: np.ndarray, secret: bytes) -> np.ndarray:
    """Pseudonyms of many authors (int64, in the order of ``ids``)."""
    key = hashlib.blake2b(secret, digest_size=32, person=PERSON).digest()
    blocks = np.empty((len(ids), 2), dtype=">i8")
    blocks[:, 0] = np.asarray(ids, dtype=np.int64)
    blocks[:, 1] = SUFFIX
    # ECB on purpose: each id is one independent block, AES used as a pseudorandom function, not to
    # encrypt a message (the S305 warning is about the latter)
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    sealed = encryptor.update(blocks.tobytes()) + encryptor.finalize()
    return np.frombuffer(sealed, dtype=">i8")[0::2].astype(np.int64)


def scrub_sql(expression: str, *, engine: str) -> str:
    """SQL replacing e-mail addresses, then phone numbers, in ``expression`` (DuckDB needs the ``g``
    flag to replace every match; Spark always does)."""
    flags = ", 'g'" if engine == "duckdb" else ""
    email = f"regexp_replace({expression}, '{EMAIL_PATTERN}', '{EMAIL_PLACEHOLDER}'{flags})"
    return f"regexp_replace({email}, '{PHONE_PATTERN}', '{PHONE_PLACEHOLDER}'{flags})"


def scrub_text(text: str) -> str:
    """The Python form of the same replacement (for callers outside the engines)."""
    return re.sub(PHONE_PATTERN, PHONE_PLACEHOLDER, re.sub(EMAIL_PATTERN, EMAIL_PLACEHOLDER, text))
