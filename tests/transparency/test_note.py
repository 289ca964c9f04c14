"""C2SP signed notes and cosignatures, checked against the test vectors of Go's
``golang.org/x/mod/sumdb/note`` package and the C2SP examples."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency import note
from consentry.transparency.note import COSIGNATURE_V1, ED25519

# Go's note_test.go (golang.org/x/mod/sumdb/note): keys, a text and its signatures (data only).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_B64 = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
PETER_SIG = f"— PeterNeumann {PETER_B64}\n"
ENOCH_B64 = "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
ENOCH_SIG = f"— EnochRoot {ENOCH_B64}\n"


def test_signing_reproduces_gos_signature_byte_for_byte() -> None:
    signer = note.signer_from_skey(PETER_SKEY)
    assert signer.vkey == PETER_VKEY
    assert signer.verifier.key_id == 0xC74F20A3
    assert signer.sign(TEXT) == TEXT + "\n" + PETER_SIG


def test_gos_notes_open_with_the_published_keys() -> None:
    peter, enoch = note.parse_vkey(PETER_VKEY), note.parse_vkey(ENOCH_VKEY)
    parsed = note.parse_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert parsed.text == TEXT
    verified = note.verify_note(parsed, [peter])  # Enoch's signature is unknown: ignored
    assert [v.verifier for v in verified] == [peter]
    both = note.verify_note(parsed, [peter, enoch])
    assert [v.verifier.name for v in both] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(IntegrityFailure):
        note.verify_note(parsed, [])
    forged = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(IntegrityFailure, match="PeterNeumann"):
        note.verify_note(note.parse_note(TEXT + "\n" + forged), [peter])
    edited = note.parse_note(TEXT.replace("answer", "Answer") + "\n" + PETER_SIG)
    with pytest.raises(IntegrityFailure):
        note.verify_note(edited, [peter])


@pytest.mark.parametrize(
    "message",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + f"— Bad Name {PETER_B64}\n",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes_are_refused(message: str) -> None:
    """The malformed messages of Go's TestOpen."""
    with pytest.raises(InvalidInput):
        note.parse_note(message)


def test_verifier_keys_are_checked_like_gos() -> None:
    note.parse_vkey(PETER_VKEY)
    for bad in (
        PETER_VKEY[:-1],
        PETER_VKEY[1:],
        PETER_VKEY.replace("c74f20a3", "c74f20a4"),
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(InvalidInput):
            note.parse_vkey(bad)
    for i in range(len(PETER_VKEY)):  # every one-character change is refused
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(InvalidInput):
            note.parse_vkey(mangled)


def test_the_c2sp_cosignature_example_carries_its_key_id_and_time() -> None:
    """tlog-cosignature's example: the witness line holds ``time 1679315147``."""
    example = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
        "— example.com/behind-the-sofa "
        "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
        "— witness.example.com/w1 "
        "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
    )
    parsed = note.parse_note(example)
    witness = parsed.signatures[1]
    assert witness.name == "witness.example.com/w1"
    assert int.from_bytes(witness.signature[:8], "big") == 1679315147
    assert len(witness.signature) == 72


def test_cosignatures_verify_and_commit_to_time_and_text() -> None:
    log = note.NoteSigner("example.com/log", Ed25519PrivateKey.generate())
    witness = note.NoteSigner("witness.example/w1", Ed25519PrivateKey.generate(), COSIGNATURE_V1)
    text = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    signed = log.sign(text) + witness.signature_line(text, timestamp=1_700_000_000)
    parsed = note.parse_note(signed)
    verified = note.verify_note(parsed, [log.verifier, witness.verifier])
    assert [v.timestamp for v in verified] == [None, 1_700_000_000]
    assert (
        witness.vkey.startswith("witness.example/w1+") and note.parse_vkey(witness.vkey) == witness.verifier
    )
    # the same key as a plain Ed25519 note key has another key ID: the line is ignored, not confused
    plain = note.Verifier(witness.name, ED25519, witness.verifier.public)
    assert plain.key_id != witness.verifier.key_id
    with pytest.raises(IntegrityFailure):
        note.verify_note(parsed, [plain])
    line = witness.signature_line(text, timestamp=1_700_000_000)
    raw = note.unb64(line.split(" ")[2].strip(), what="line")
    moved = raw[:4] + (1_700_000_001).to_bytes(8, "big") + raw[12:]
    with pytest.raises(IntegrityFailure):
        note.verify_note(
            note.parse_note(text + "\n" + f"— {witness.name} {note.b64(moved)}\n"), [witness.verifier]
        )
