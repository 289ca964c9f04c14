"""Transparency: the consent ledger as a Merkle tree (C2SP tlog-tiles), signed checkpoints, proofs,
witnesses and a monitor."""
