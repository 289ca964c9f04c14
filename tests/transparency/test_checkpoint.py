"""tlog-checkpoint bodies and tlog-proof documents."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consentry.errors import InvalidInput
from consentry.transparency import checkpoint, note

EXAMPLE = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_the_spec_example_round_trips() -> None:
    body = checkpoint.parse_checkpoint_text(EXAMPLE)
    assert body.origin == "example.com/behind-the-sofa" and body.size == 20852163
    assert body.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert body.text == EXAMPLE
    extended = checkpoint.Checkpoint(body.origin, body.size, body.root, ("extra line",))
    assert checkpoint.parse_checkpoint_text(extended.text) == extended


@pytest.mark.parametrize(
    "text",
    [
        "origin\n5\n",
        "origin\n05\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n-5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",
        "origin\n5\nAAAA\n",
        "\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        checkpoint.parse_checkpoint_text(text)


def test_tlog_proof_documents_round_trip() -> None:
    signer = note.NoteSigner("example.com/fancylog", Ed25519PrivateKey.generate())
    signed = signer.sign("example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n")
    hashes = [bytes([i]) * 32 for i in range(5)]
    text = checkpoint.format_proof(73894, hashes, signed, extra=b"age")
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra YWdl\nindex 73894\n")
    assert text.endswith("\n\n" + signed)
    parsed = checkpoint.parse_proof(text)
    assert (parsed.index, list(parsed.proof), parsed.checkpoint, parsed.extra) == (
        73894,
        hashes,
        signed,
        b"age",
    )
    assert checkpoint.parse_proof(checkpoint.format_proof(0, [], signed)).proof == ()
    for bad in (text.replace("index", "idx"), text.replace("@v1", "@v2"), text.replace("\n\n", "\n")):
        with pytest.raises(InvalidInput):
            checkpoint.parse_proof(bad)
