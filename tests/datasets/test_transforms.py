"""Pseudonyms and personal-data placeholders."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from consentry.datasets.transforms import pseudonym, pseudonyms, scrub_sql, scrub_text

CASES = [
    ("write to ana.garcia12@mail.example.com today", "write to [email] today"),
    ("Call me on +1 415 555-0134.", "Call me on [phone]."),
    ("Bookings: (555) 123-4567", "Bookings: [phone]"),
    ("UK +44 7123 456789 and DE +49 151 12345678", "UK [phone] and DE [phone]"),
    ("FR +33 6 12 34 56 78!", "FR [phone]!"),
    ("US 415.555.0134 or 415-555-0134", "US [phone] or [phone]"),
    ("@ana_garcia12 saw 3 cats in 2024, 10/10", "@ana_garcia12 saw 3 cats in 2024, 10/10"),
    ("a@b and x@y.z and me@example.org", "a@b and x@y.z and [email]"),
]


@pytest.mark.parametrize(("text", "scrubbed"), CASES)
def test_scrubbing(text: str, scrubbed: str) -> None:
    assert scrub_text(text) == scrubbed
    connection = duckdb.connect()
    [(got,)] = connection.execute(f"SELECT {scrub_sql('?', engine='duckdb')}", [text]).fetchall()
    assert got == scrubbed


def reference_pseudonym(account_id: int, secret: bytes) -> int:
    """The documented scheme, written out one author at a time."""
    key = hashlib.blake2b(secret, digest_size=32, person=b"consentry-author").digest()
    block = account_id.to_bytes(8, "big", signed=True) + b"consentr"
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return int.from_bytes((encryptor.update(block) + encryptor.finalize())[:8], "big", signed=True)


def test_pseudonyms() -> None:
    one, two = bytes(range(32)), bytes(range(1, 33))
    assert pseudonym(7, one) == pseudonym(7, one)
    assert pseudonym(7, one) != pseudonym(7, two)
    assert pseudonym(7, one) != pseudonym(8, one)
    assert -(2**63) <= pseudonym(7, one) < 2**63
    ids = np.array([7, 8, 2**40, -3], dtype=np.int64)
    assert pseudonyms(ids, one).tolist() == [reference_pseudonym(int(i), one) for i in ids]
    assert pseudonym(8, two) == reference_pseudonym(8, two)
    many = pseudonyms(np.arange(200_000, dtype=np.int64), one)
    assert len(np.unique(many)) == len(many)  # distinct authors keep distinct pseudonyms
    assert pseudonyms(np.array([], dtype=np.int64), one).tolist() == []
