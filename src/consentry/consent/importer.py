"""Bulk import of a lake's ``consent_events/`` into the ledger.

Events are appended in the order they were recorded (ties keep file order), each naming its account by
subject key (created for accounts that have none yet) and the policy version that applied to the account
at that moment. Lake sources map to the ledger's ``(source, client)``: ``web``/``ios``/``android``/``api``
are the holder's own choices from that client, ``gpc`` a Global Privacy Control signal (from the web),
``admin`` an operator's entry. Everything is validated before anything is written; the whole import is
one transaction.

The accounts the events name that the database lacks are created as the lake's ``accounts/`` describes
them (id, handle, country, status, ...), so an imported account's settings can change afterwards
(``consentry settings set``); accounts already in the database are never changed. Only accounts with
events are created: each gets its subject mapping in the same import, so a closed one is judged by its
own status time (``datasets.eligibility.with_database_status``), never as closed since always.
``import_accounts`` does only this, for a ledger imported before imports created accounts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consentry.consent import ledger, reader
from consentry.consent.catalog import Setting
from consentry.consent.evaluate import to_micros
from consentry.consent.events import OptOuts, publish
from consentry.consent.models import Subject
from consentry.consent.policy import ordered
from consentry.consent.service import ConsentContext, load_policies
from consentry.errors import Conflict, InvalidInput

SOURCE_MAP = {
    "web": ("user", "web"),
    "ios": ("user", "ios"),
    "android": ("user", "android"),
    "api": ("user", "api"),
    "gpc": ("gpc", "web"),
    "admin": ("admin", "admin"),
}
EVENT_COLUMNS = ("account_id", "setting", "value", "source", "recorded_at")
ACCOUNT_COLUMNS = (
    "account_id",
    "handle",
    "created_at",
    "country",
    "birth_year",
    "protected",
    "status",
    "status_changed_at",
)


@dataclass(frozen=True)
class ImportReport:
    """What an import appended."""

    events: int
    new_subjects: int
    new_accounts: int
    """Accounts of the lake the database did not have, created by this import."""
    head_seq: int
    head_hash: str
    seconds: float


def _read(folder: Path, columns: tuple[str, ...]) -> pa.Table:
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder of Parquet files", field=folder.name)
    try:
        table = ds.dataset(folder, format="parquet").to_table(columns=list(columns))
    except (pa.ArrowInvalid, KeyError, OSError) as error:
        raise InvalidInput(f"cannot read {folder}: {error}", field=folder.name) from error
    return table


def _check(events: pa.Table, ctx: ConsentContext) -> None:
    for column, allowed in (
        ("setting", ctx.catalog.keys),
        ("value", ledger.VALUES),
        ("source", tuple(SOURCE_MAP)),
    ):
        bad = pc.invert(pc.fill_null(pc.is_in(events[column], value_set=pa.array(allowed)), False))
        count = pc.sum(bad).as_py() or 0
        if count:
            example = events.filter(bad)[column][0].as_py()
            raise InvalidInput(
                f"{count} events have a {column} outside {', '.join(allowed)} (e.g. {example!r})",
                field=f"consent_events.{column}",
            )
    for column in ("account_id", "recorded_at"):
        nulls = events[column].null_count
        if nulls:
            raise InvalidInput(f"{nulls} events have no {column}", field=f"consent_events.{column}")


def _in_database(session: Session, column: Any, values: list[Any], *, total: int) -> set[Any]:
    """Which of ``values`` the database holds in ``column`` (one scan when the table is not much larger
    than the list, else lookups in chunks)."""
    if not total or not values:
        return set()
    if total <= 4 * len(values):
        return set(session.scalars(select(column))) & set(values)
    found: set[Any] = set()
    for start in range(0, len(values), 20_000):
        found.update(session.scalars(select(column).where(column.in_(values[start : start + 20_000]))))
    return found


def _create_accounts(session: Session, accounts: pa.Table, named: np.ndarray) -> int:
    """Create the accounts ``named`` by events that the database lacks, as the lake's ``accounts``
    describe them; existing rows stay as they are. A handle another account holds, or a lake naming one
    account twice, fails the import."""
    from consentry.social.models import ACCOUNT_STATUSES, Account
    from consentry.social.seed import FOLDER_TABLES, insert_rows, restart_sequences

    accounts = accounts.filter(pc.is_in(accounts["account_id"], value_set=pa.array(named, pa.int64())))
    ids = accounts["account_id"].to_pylist()
    if len(set(ids)) != len(ids):
        raise InvalidInput("accounts/ names an account_id twice", field="accounts.account_id")
    total = session.scalar(select(func.count()).select_from(Account)) or 0
    present = _in_database(session, Account.id, ids, total=total)
    new = accounts.filter(pa.array([i not in present for i in ids], pa.bool_())) if present else accounts
    if not new.num_rows:
        return 0
    for column in ("handle", "created_at", "status", "protected"):
        if new[column].null_count:
            raise InvalidInput(
                f"{new[column].null_count} accounts have no {column}", field=f"accounts.{column}"
            )
    bad = pc.sum(pc.invert(pc.is_in(new["status"], value_set=pa.array(ACCOUNT_STATUSES)))).as_py() or 0
    if bad:
        raise InvalidInput(
            f"{bad} accounts have a status outside {', '.join(ACCOUNT_STATUSES)}", field="accounts.status"
        )
    handles = new["handle"].to_pylist()
    if len(set(handles)) != len(handles):
        raise InvalidInput("accounts/ names a handle twice", field="accounts.handle")
    taken = sorted(_in_database(session, Account.handle, handles, total=total))
    if taken:
        raise Conflict(
            f"{len(taken)} handle(s) of accounts in the lake belong to other accounts of the database "
            f"(e.g. {', '.join(taken[:5])}); nothing was imported",
            field="accounts.handle",
        )
    table, names = FOLDER_TABLES["accounts"]
    insert_rows(session, table, new.select(list(names)), names)
    restart_sequences(session, ("accounts",))
    return int(new.num_rows)


def import_accounts(session: Session, lake: Path) -> int:
    """Create the accounts ``lake/consent_events`` name that the database lacks, from ``lake/accounts``
    (the caller commits); returns how many."""
    owners = _read(lake / "consent_events", ("account_id",))["account_id"]
    if owners.null_count:
        raise InvalidInput(
            f"{owners.null_count} events have no account_id", field="consent_events.account_id"
        )
    named = np.unique(np.asarray(owners.to_numpy(), dtype=np.int64))
    return _create_accounts(session, _read(lake / "accounts", ACCOUNT_COLUMNS), named)


def _opt_outs(*, owners: np.ndarray, events: pa.Table, ctx: ConsentContext) -> OptOuts:
    """The accounts whose last imported event for a setting is a deny, computed when a subscriber asks."""

    def denied() -> dict[Setting, np.ndarray]:
        settings = np.asarray(events["setting"].to_numpy(zero_copy_only=False))
        denies = np.asarray(pc.equal(events["value"], "deny").to_numpy(zero_copy_only=False), dtype=bool)
        found: dict[Setting, np.ndarray] = {}
        for key in np.unique(settings).tolist():
            mask = settings == key
            latest, first = np.unique(owners[mask][::-1], return_index=True)  # events are in time order
            accounts = latest[denies[mask][::-1][first]]
            if accounts.size:
                found[ctx.catalog.get(key)] = accounts
        return found

    return OptOuts(denied)


def _policy_versions(session: Session, events: pa.Table, accounts: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The account each event names, and the policy version in force for it then (0: none), from when
    that account was created."""
    ids = np.asarray(accounts["account_id"].to_numpy(), dtype=np.int64)
    order = np.argsort(ids)
    owners = np.asarray(events["account_id"].to_numpy(), dtype=np.int64)
    pos = np.minimum(np.searchsorted(ids[order], owners), max(len(ids) - 1, 0))
    known = (ids[order][pos] == owners) if len(ids) else np.zeros(len(owners), dtype=bool)
    if not known.all():
        missing = owners[~known]
        raise InvalidInput(
            f"{len(missing)} events name accounts missing from accounts/ (e.g. {int(missing[0])})",
            field="consent_events.account_id",
        )
    created = np.asarray(pc.cast(accounts["created_at"], pa.int64()).to_numpy(), dtype=np.int64)[order][pos]
    when = np.asarray(pc.cast(events["recorded_at"], pa.int64()).to_numpy(), dtype=np.int64)
    version = np.zeros(len(owners), dtype=np.int64)
    for policy in ordered(load_policies(session)):
        effective = to_micros(policy.effective_at)
        applies = when >= effective
        if policy.applies_to == "new_accounts":
            applies &= created >= effective
        version[applies] = policy.version
    return owners, version


def _subject_keys(session: Session, wanted: np.ndarray) -> tuple[dict[int, str], int]:
    """The subject key of every account in ``wanted``: existing ones, and new ones made for the others
    in one insert; and how many were new."""
    subjects: dict[int, str] = {}
    existing = session.scalar(select(func.count()).select_from(Subject)) or 0
    if existing <= 4 * len(wanted):  # reading every mapping in one scan beats many IN lookups
        subjects.update(
            (int(a), k) for a, k in session.execute(select(Subject.account_id, Subject.subject_key))
        )
    else:
        for chunk in np.array_split(wanted, max(1, len(wanted) // 20_000)):
            rows = session.execute(
                select(Subject.account_id, Subject.subject_key).where(Subject.account_id.in_(chunk.tolist()))
            )
            subjects.update({int(a): k for a, k in rows})
    missing = [a for a in wanted.tolist() if a not in subjects]
    randomness = os.urandom(16 * len(missing)).hex()
    fresh = {a: randomness[32 * i : 32 * i + 32] for i, a in enumerate(missing)}
    marks = "%s, %s" if reader.dialect_of(session) == "postgresql" else "?, ?"
    with reader.cursor(session) as cursor:
        cursor.executemany(
            f"INSERT INTO consent_subjects (account_id, subject_key) VALUES ({marks})", list(fresh.items())
        )
    subjects.update(fresh)
    return subjects, len(fresh)


def _ledger_table(
    events: pa.Table, owners: np.ndarray, version: np.ndarray, subjects: dict[int, str]
) -> pa.Table:
    """The events in the ledger's bulk form (``ledger.append_table``)."""
    source_keys = pa.array(list(SOURCE_MAP))
    index = pc.index_in(events["source"], value_set=source_keys)
    return pa.table(
        {
            "subject": pa.array([subjects[a] for a in owners.tolist()], pa.string()),
            "setting": events["setting"],
            "value": events["value"],
            "source": pc.take(pa.array([v[0] for v in SOURCE_MAP.values()]), index),
            "client": pc.take(pa.array([v[1] for v in SOURCE_MAP.values()]), index),
            "policy_version": pa.array(version, mask=version == 0),
            "recorded_at": events["recorded_at"],
        }
    )


def import_events(
    session: Session,
    lake: Path,
    *,
    ctx: ConsentContext,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Append every event of ``lake/consent_events`` to the ledger (the caller commits)."""
    started = datetime.now(UTC)
    events = _read(lake / "consent_events", EVENT_COLUMNS)
    _check(events, ctx)
    events = events.take(pc.sort_indices(events, sort_keys=[("recorded_at", "ascending")]))
    accounts = _read(lake / "accounts", ACCOUNT_COLUMNS)
    owners, version = _policy_versions(session, events, accounts)
    new_accounts = _create_accounts(session, accounts, np.unique(owners))
    subjects, new_subjects = _subject_keys(session, np.unique(owners))
    total = events.num_rows
    if progress is not None:
        progress(0, total)
    seq, head = ledger.append_table(session, _ledger_table(events, owners, version, subjects))
    if pc.any(pc.equal(events["value"], "deny")).as_py():  # revoked in this transaction
        publish(session, _opt_outs(owners=owners, events=events, ctx=ctx))
    if progress is not None:
        progress(total, total)
    seconds = (datetime.now(UTC) - started).total_seconds()
    return ImportReport(
        events=total,
        new_subjects=new_subjects,
        new_accounts=new_accounts,
        head_seq=seq,
        head_hash=head,
        seconds=seconds,
    )
