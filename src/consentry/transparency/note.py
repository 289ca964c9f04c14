"""C2SP signed-note and tlog-cosignature (Ed25519): keys, signing, parsing and verification.

A note is a text ending in a newline, a blank line, then signature lines ``— <key name> <base64>``, the
base64 holding a 4-byte big-endian key ID and the signature. Key ID =
``SHA-256(name || 0x0A || type || public key)[:4]`` with type ``0x01`` for a log's Ed25519 key and
``0x04`` for an Ed25519 cosigner (witness), whose signature is ``u64 timestamp || Ed25519`` over
``"cosignature/v1\\ntime <t>\\n" || note text``. A verifier key (vkey) is
``<name>+<hex key ID>+<base64(type || public key)>``; the private form Go's ``note`` package uses is
``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

Verifiers ignore signatures from unknown keys, reject a note whose known signature fails, and reject a
note with no verified signature (signed-note, "Signatures").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consentry.errors import IntegrityFailure, InvalidInput

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014"
MAX_SIGNATURES = 100


def b64(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648, section 4)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, *, what: str) -> bytes:
    """Strict standard base64; ``InvalidInput`` naming ``what`` otherwise."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as error:
        raise InvalidInput(f"{what} is not valid base64", field=what) from error


def check_name(name: str) -> str:
    """A key name: non-empty, no Unicode spaces, no ``+``."""
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise InvalidInput(f"{name!r} is not a valid key name (non-empty, no spaces, no '+')", field="name")
    return name


def key_id(name: str, kind: int, public: bytes) -> int:
    """``SHA-256(name || 0x0A || kind || public)[:4]`` as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([kind]) + public).digest()
    return int.from_bytes(digest[:4], "big")


def raw_public(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """A trusted public key: name, kind (``ED25519`` or ``COSIGNATURE_V1``) and the key."""

    name: str
    kind: int
    public: bytes

    @property
    def key_id(self) -> int:
        """The key ID this key signs with."""
        return key_id(self.name, self.kind, self.public)

    @property
    def vkey(self) -> str:
        """The verifier key text ``name+hexid+base64(kind || key)``."""
        return f"{self.name}+{self.key_id:08x}+{b64(bytes([self.kind]) + self.public)}"

    def check(self, text: str, signature: bytes) -> int | None:
        """Verify a signature over a note text; returns the cosignature's timestamp (``None`` for a
        plain Ed25519 signature). ``IntegrityFailure`` when it does not verify."""
        key = Ed25519PublicKey.from_public_bytes(self.public)
        stamp: int | None = None
        message = text.encode("utf-8")
        if self.kind == COSIGNATURE_V1:
            if len(signature) != 8 + 64:
                raise IntegrityFailure(f"the cosignature by {self.name} is not 72 bytes")
            stamp = int.from_bytes(signature[:8], "big")
            if stamp >= 1 << 63:
                raise IntegrityFailure(f"the cosignature by {self.name} has an impossible time")
            message = cosigned_message(text, stamp)
            signature = signature[8:]
        try:
            key.verify(signature, message)
        except InvalidSignature as error:
            raise IntegrityFailure(f"invalid signature for key {self.name}+{self.key_id:08x}") from error
        return stamp


def parse_vkey(vkey: str) -> Verifier:
    """A verifier key ``name+hexid+base64(kind || key)`` (kinds 0x01 and 0x04, Ed25519)."""
    name, sep, rest = vkey.strip().partition("+")
    hex_id, sep2, encoded = rest.partition("+")
    if not sep or not sep2 or len(hex_id) != 8 or hex_id.lower() != hex_id:
        raise InvalidInput(f"{vkey!r} is not a verifier key (name+hexid+base64)", field="vkey")
    check_name(name)
    try:
        claimed = int(hex_id, 16)
    except ValueError as error:
        raise InvalidInput(f"{hex_id!r} is not a hex key ID", field="vkey") from error
    material = unb64(encoded, what="vkey")
    if len(material) != 33 or material[0] not in (ED25519, COSIGNATURE_V1):
        raise InvalidInput("the verifier key is not an Ed25519 (0x01) or cosigner (0x04) key", field="vkey")
    verifier = Verifier(name, material[0], material[1:])
    if verifier.key_id != claimed:
        raise InvalidInput(f"the key ID of {vkey!r} does not match its name and key", field="vkey")
    return verifier


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a ``cosignature/v1`` signs: header, time line, then the note text."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode("utf-8")


@dataclass(frozen=True)
class NoteSigner:
    """A private key that signs notes: a log's (``ED25519``) or a witness's (``COSIGNATURE_V1``)."""

    name: str
    private_key: Ed25519PrivateKey
    kind: int = ED25519

    def __post_init__(self) -> None:
        check_name(self.name)

    @property
    def verifier(self) -> Verifier:
        """The public half."""
        return Verifier(self.name, self.kind, raw_public(self.private_key.public_key()))

    @property
    def vkey(self) -> str:
        """The verifier key text to publish."""
        return self.verifier.vkey

    def signature_line(self, text: str, *, timestamp: int | None = None) -> str:
        """The signature line over a note text (a cosignature at ``timestamp``, default now)."""
        check_text(text)
        prefix = self.verifier.key_id.to_bytes(4, "big")
        if self.kind == COSIGNATURE_V1:
            stamp = int(time.time()) if timestamp is None else timestamp
            body = stamp.to_bytes(8, "big") + self.private_key.sign(cosigned_message(text, stamp))
        else:
            body = self.private_key.sign(text.encode("utf-8"))
        return f"{DASH} {self.name} {b64(prefix + body)}\n"

    def sign(self, text: str) -> str:
        """The signed note: text, blank line, this key's signature."""
        return text + "\n" + self.signature_line(text)


def signer_from_skey(skey: str) -> NoteSigner:
    """A log signer from Go's private key text ``PRIVATE+KEY+name+hexid+base64(0x01 || seed)``."""
    parts = skey.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise InvalidInput("not a PRIVATE+KEY+name+id+key signer key", field="skey")
    material = unb64(parts[4], what="skey")
    if len(material) != 33 or material[0] != ED25519:
        raise InvalidInput("the signer key is not an Ed25519 seed", field="skey")
    signer = NoteSigner(check_name(parts[2]), Ed25519PrivateKey.from_private_bytes(material[1:]))
    if f"{signer.verifier.key_id:08x}" != parts[3]:
        raise InvalidInput("the signer key's ID does not match its name and key", field="skey")
    return signer


def check_text(text: str) -> None:
    """A note text: non-empty, ends in a newline, no control characters but newlines."""
    if not text.endswith("\n") or any(c < " " and c != "\n" for c in text):
        raise InvalidInput("a note text must end in a newline and hold no control characters", field="note")


@dataclass(frozen=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: int
    signature: bytes

    @property
    def line(self) -> str:
        """The line as it appears in the note."""
        return f"{DASH} {self.name} {b64(self.key_id.to_bytes(4, 'big') + self.signature)}\n"


@dataclass
class Note:
    """A parsed note: its text and every signature line (verified or not)."""

    text: str
    signatures: list[Signature] = field(default_factory=list)

    def render(self) -> str:
        """The note as text."""
        return self.text + "\n" + "".join(s.line for s in self.signatures)


def parse_note(message: str | bytes) -> Note:
    """Split a note into text and signatures; ``InvalidInput`` if it is malformed."""
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput("a note must be UTF-8", field="note") from error
    if any(c < " " and c != "\n" for c in message) or "\ufffd" in message:
        raise InvalidInput("a note holds no control characters but newlines", field="note")
    split = message.rfind("\n\n")
    if split < 0:
        raise InvalidInput("a note needs a blank line before its signatures", field="note")
    text, lines = message[: split + 1], message[split + 2 :]
    if not lines or not lines.endswith("\n"):
        raise InvalidInput("a note needs at least one signature line", field="note")
    signatures = []
    for line in lines[:-1].split("\n"):
        if not line.startswith(DASH + " "):
            raise InvalidInput(f"{line[:40]!r} is not a signature line", field="note")
        name, sep, encoded = line[2:].partition(" ")
        if not sep or " " in encoded:
            raise InvalidInput("a signature line is '— name base64'", field="note")
        check_name(name)
        raw = unb64(encoded, what="note")
        if len(raw) < 5:
            raise InvalidInput("a signature is shorter than its key ID", field="note")
        signatures.append(Signature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
    if len(signatures) > MAX_SIGNATURES:
        raise InvalidInput(f"a note may carry at most {MAX_SIGNATURES} signatures", field="note")
    return Note(text, signatures)


@dataclass(frozen=True)
class Verified:
    """A signature that verified, with the key and the cosignature time (if it is one)."""

    verifier: Verifier
    signature: Signature
    timestamp: int | None


def verify_note(note: Note, verifiers: Sequence[Verifier]) -> list[Verified]:
    """Every signature of ``note`` by a known key, each checked; unknown ones are ignored.

    ``IntegrityFailure`` if a known key's signature fails or nothing verifies.
    """
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[Verified] = []
    for signature in note.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            continue
        stamp = verifier.check(note.text, signature.signature)
        if all(v.signature != signature for v in verified):
            verified.append(Verified(verifier, signature, stamp))
    if not verified:
        raise IntegrityFailure("the note has no signature by a trusted key")
    return verified


def generate(name: str, kind: int = ED25519) -> NoteSigner:
    """A fresh key pair."""
    return NoteSigner(name, Ed25519PrivateKey.generate(), kind)
