"""C2SP tlog-checkpoint bodies and tlog-proof documents.

A checkpoint's note text is the origin line, the tree size in decimal, the base64 root hash, then
optional non-empty extension lines. A tlog-proof is ``c2sp.org/tlog-proof@v1``, an optional
``extra <base64>`` line, ``index <n>``, one base64 hash per line of the inclusion proof, a blank line,
then the signed checkpoint verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from consentry.errors import InvalidInput
from consentry.transparency.merkle import HASH_SIZE
from consentry.transparency.note import Note, b64, parse_note, unb64

PROOF_HEADER = "c2sp.org/tlog-proof@v1"
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,19})$")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: origin, size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The note text of this checkpoint."""
        lines = [self.origin, str(self.size), b64(self.root), *self.extensions]
        return "\n".join(lines) + "\n"


def decimal(text: str, *, what: str) -> int:
    """An ASCII decimal with no leading zeroes."""
    if not _DECIMAL.match(text) or int(text) >= 1 << 63:
        raise InvalidInput(f"{what} must be a decimal number without leading zeroes", field=what)
    return int(text)


def parse_checkpoint_text(text: str) -> Checkpoint:
    """A checkpoint from its note text."""
    if not text.endswith("\n"):
        raise InvalidInput("a checkpoint text ends in a newline", field="checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not lines[0] or any(not line for line in lines):
        raise InvalidInput("a checkpoint has an origin, a size and a root hash line", field="checkpoint")
    root = unb64(lines[2], what="checkpoint")
    if len(root) != HASH_SIZE:
        raise InvalidInput("a checkpoint's root hash is 32 bytes", field="checkpoint")
    return Checkpoint(lines[0], decimal(lines[1], what="checkpoint"), root, tuple(lines[3:]))


def parse_checkpoint(signed: str | bytes) -> tuple[Checkpoint, Note]:
    """A signed checkpoint: its body and its note (signatures not yet verified)."""
    note = parse_note(signed)
    return parse_checkpoint_text(note.text), note


@dataclass(frozen=True)
class TlogProof:
    """A tlog-proof: leaf index, inclusion proof, the signed checkpoint, optional extra data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    @property
    def text(self) -> str:
        """The tlog-proof document."""
        lines = [PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {b64(self.extra)}")
        lines.append(f"index {self.index}")
        lines += [b64(h) for h in self.proof]
        return "\n".join(lines) + "\n\n" + self.checkpoint


def format_proof(index: int, proof: Sequence[bytes], checkpoint: str, extra: bytes | None = None) -> str:
    """A tlog-proof document."""
    return TlogProof(index, tuple(proof), checkpoint, extra).text


def parse_proof(text: str | bytes) -> TlogProof:
    """A tlog-proof document; ``InvalidInput`` if malformed."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput("a tlog-proof must be UTF-8", field="proof") from error
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise InvalidInput("a tlog-proof needs a blank line before its checkpoint", field="proof")
    lines = head.split("\n")
    if lines[0] != PROOF_HEADER:
        raise InvalidInput(f"a tlog-proof starts with {PROOF_HEADER}", field="proof")
    at = 1
    extra = None
    if at < len(lines) and lines[at].startswith("extra "):
        extra = unb64(lines[at][6:], what="proof")
        at += 1
    if at >= len(lines) or not lines[at].startswith("index "):
        raise InvalidInput("a tlog-proof names the entry's index", field="proof")
    index = decimal(lines[at][6:], what="proof")
    hashes = tuple(unb64(line, what="proof") for line in lines[at + 1 :])
    if any(len(h) != HASH_SIZE for h in hashes):
        raise InvalidInput("every inclusion proof line is a 32-byte hash", field="proof")
    parse_checkpoint(checkpoint)
    return TlogProof(index, hashes, checkpoint, extra)
