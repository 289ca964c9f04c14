"""One-time claims in memory: the first claim wins until it expires; the table stays bounded."""

from __future__ import annotations

from consentry.metering.nonces import MemoryClaims


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_claim_holds_until_it_expires() -> None:
    clock = Clock()
    claims = MemoryClaims(clock=clock)
    assert claims.claim("a", until=1060)
    assert not claims.claim("a", until=1060)
    assert claims.claim("b", until=1060)
    clock.now = 1061
    assert claims.claim("a", until=1200)  # expired: a new signature may use it again


def test_claims_are_bounded() -> None:
    clock = Clock()
    claims = MemoryClaims(limit=3, clock=clock)
    for name in "abc":
        assert claims.claim(name, until=1010)
    clock.now = 1005
    assert claims.claim("d", until=1100)
    assert len(claims) <= 3
    clock.now = 1020  # a, b and c expired: swept when full
    for name in "efg":
        claims.claim(name, until=1100)
    assert len(claims) <= 3
    assert not claims.claim("g", until=1100)
