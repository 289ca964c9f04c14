"""Vectorised effective consent for 1,000,000 accounts x 4 settings, against looping single checks.

Target (issue 2): <= 1 s, and >= 50x faster than the single-check implementation looped over the same
accounts (the loop is measured on a sample and scaled).

    .venv/bin/python bench/consent_eval.py [--accounts 1000000] [--runs 5] [--sample 5000]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_seconds, report
from consentry.consent.catalog import load_catalog, load_jurisdictions
from consentry.consent.evaluate import (
    ACCOUNT_SCHEMA,
    EVENT_SCHEMA,
    AccountFacts,
    ExplicitEvent,
    effective_consent,
    evaluate_many,
)
from consentry.consent.policy import Policy

START = datetime(2019, 1, 1, tzinfo=UTC)
POLICIES = [
    Policy(
        1,
        datetime(2000, 1, 1, tzinfo=UTC),
        "all",
        {"default": {"*": "allow"}, "EEA": {"*": "deny"}, "UK": {"*": "deny"}, "CH": {"*": "deny"}},
    ),
    Policy(
        2,
        datetime(2024, 6, 26, tzinfo=UTC),
        "new_accounts",
        {
            "default": {"*": "allow"},
            "EEA": {"*": "deny"},
            "UK": {"*": "deny"},
            "CH": {"third_party_sharing": "deny", "*": "allow"},
        },
    ),
]


def make_world(accounts: int, seed: int = 7) -> tuple[pa.Table, pa.Table]:
    """Synthetic accounts (mixed countries, minors, inactive) and ~1.5 events per account."""
    rng = np.random.default_rng(seed)
    span = int((datetime(2026, 11, 1, tzinfo=UTC) - START).total_seconds() * 1e6)
    start_us = int(START.timestamp() * 1e6)
    created = start_us + rng.integers(0, span, accounts)
    countries = np.array(["US", "DE", "FR", "GB", "CH", "BR", "IN", "JP", "ES", "IT"])
    status = rng.choice(np.array(["active", "deactivated", "deleted"]), accounts, p=[0.99, 0.006, 0.004])
    changed = np.where(status == "active", 0, created + rng.integers(0, 10**12, accounts))
    birth = rng.integers(1950, 2015, accounts).astype(np.int16)
    accounts_table = pa.table(
        {
            "account_id": pa.array(np.arange(1, accounts + 1, dtype=np.int64)),
            "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
            "country": pa.array(countries[rng.integers(0, len(countries), accounts)]),
            "birth_year": pa.array(birth, mask=rng.random(accounts) < 0.01),
            "status": pa.array(status),
            "status_changed_at": pa.array(changed, pa.timestamp("us", tz="UTC"), mask=status == "active"),
        },
        schema=ACCOUNT_SCHEMA,
    )
    n_events = int(accounts * 1.5)
    owners = rng.integers(1, accounts + 1, n_events)
    keys = np.array(load_catalog().keys)
    events = pa.table(
        {
            "account_id": pa.array(owners.astype(np.int64)),
            "setting": pa.array(keys[rng.integers(0, len(keys), n_events)]),
            "value": pa.array(np.where(rng.random(n_events) < 0.6, "deny", "allow")),
            "recorded_at": pa.array(
                created[owners - 1] + rng.integers(0, 10**13, n_events), pa.timestamp("us", tz="UTC")
            ),
            "seq": pa.array(np.arange(1, n_events + 1, dtype=np.int64)),
        },
        schema=EVENT_SCHEMA,
    )
    return accounts_table, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sample", type=int, default=5_000)
    args = parser.parse_args()
    at = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=1)
    keys = list(load_catalog().keys)
    jurisdictions = load_jurisdictions()
    accounts, events = make_world(args.accounts)

    def vectorised() -> pa.Table:
        return evaluate_many(
            accounts, events, settings=keys, at=at, policies=POLICIES, jurisdictions=jurisdictions
        )

    vector_s, samples = median_seconds(vectorised, args.runs)

    # single checks on a sample of accounts, with each account's events grouped beforehand (fair to the loop)
    sample_ids = set(range(1, args.sample + 1))
    rows = [r for r in accounts.slice(0, args.sample).to_pylist()]
    grouped: dict[int, list[ExplicitEvent]] = {i: [] for i in sample_ids}
    for e in events.filter(pa.compute.less_equal(events["account_id"], args.sample)).to_pylist():
        grouped[e["account_id"]].append(ExplicitEvent(e["setting"], e["value"], e["recorded_at"], e["seq"]))
    facts = [
        AccountFacts(
            r["account_id"],
            r["created_at"],
            r["country"],
            r["birth_year"],
            r["status"],
            r["status_changed_at"],
        )
        for r in rows
    ]

    def loop() -> int:
        allowed = 0
        for f in facts:
            for key in keys:
                allowed += effective_consent(
                    account=f,
                    setting=key,
                    at=at,
                    events=grouped[f.account_id],
                    policies=POLICIES,
                    jurisdictions=jurisdictions,
                ).allowed
        return allowed

    loop_s, _ = median_seconds(loop, 3)
    loop_scaled = loop_s * args.accounts / args.sample
    result = vectorised()
    report(
        "consent_eval",
        {
            "accounts": args.accounts,
            "events": events.num_rows,
            "settings": len(keys),
            "vectorised_s_median": vector_s,
            "vectorised_samples_s": [round(s, 3) for s in samples],
            "single_loop_s_scaled": loop_scaled,
            "speedup_x": loop_scaled / vector_s,
            "allowed_share": sum(pa.compute.sum(result[k]).as_py() for k in keys)
            / (args.accounts * len(keys)),
            "target": "vectorised <= 1 s and speedup >= 50x",
        },
    )


if __name__ == "__main__":
    main()
