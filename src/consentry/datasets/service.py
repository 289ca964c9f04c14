"""Dataset use cases: recipients, building releases, listing, showing and verifying them, build jobs.

A build checks the request and the lake and reads the recipient's secret, then runs an engine into a
staging folder while a worker thread reads the consent snapshot (ledger head, policies, and the events
up to ``as_of`` and that head: ``datasets.snapshot``) and evaluates the author facts over the lake's
``accounts/``; it writes lineage, manifest and dataset card, and publishes by one atomic rename while
the release row is recorded (one commit). Any failure before the rename leaves nothing published.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyroaring import BitMap64
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry import __version__
from consentry.consent.catalog import PURPOSES
from consentry.consent.service import ConsentContext
from consentry.datasets import lineage, writer
from consentry.datasets.eligibility import (
    RELEASE_CATEGORIES,
    SPECS,
    Authors,
    Retention,
    Window,
    author_facts,
    covering_settings,
    with_database_status,
    with_pseudonyms,
)
from consentry.datasets.engines import (
    ENGINES,
    REMOVALS_SCHEMA,
    STEPS_PER_CATEGORY,
    CategoryJob,
    CategoryOutcome,
    EngineJob,
    Progress,
    get_engine,
)
from consentry.datasets.engines.spark import spark_master_options
from consentry.datasets.manifest import MANIFEST_FORMAT, dataset_card, write_manifest
from consentry.datasets.models import RECIPIENT_KINDS, BuildJob, LakeCheck, Recipient, Release
from consentry.datasets.queries import get_recipient as get_recipient
from consentry.datasets.queries import list_releases as list_releases
from consentry.datasets.queries import recipient_names as recipient_names
from consentry.datasets.snapshot import ConsentSnapshot, read_snapshot
from consentry.datasets.snapshot import ledger_events as ledger_events
from consentry.datasets.transforms import PSEUDONYM_SCHEME
from consentry.db import Database, utcnow
from consentry.errors import Conflict, ConsentryError, IntegrityFailure, InvalidInput, NotFound
from consentry.jobs import service as job_queue
from consentry.jobs.runner import Lease
from consentry.lake.source import Lake, LakeSpec, open_lake, parquet_spec
from consentry.progress import throttled
from consentry.transparency import cite
from consentry.transparency.cite import LocalLog, LogView
from consentry.transparency.publisher import publish
from consentry.transparency.verify import Trust

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
REMOVALS = "removals.parquet"
README = "README.md"
WORK = ".work"

# --- recipients -------------------------------------------------------------------------------------


def add_recipient(
    session: Session,
    *,
    name: str,
    kind: str,
    purposes: Sequence[str],
    categories: Sequence[str],
    now: datetime | None = None,
) -> Recipient:
    """Register a recipient with the purposes and categories it may receive; its pseudonymisation secret
    is generated here and never shown."""
    if not NAME.match(name):
        raise InvalidInput("name must be 1-100 letters, digits, '.', '_' or '-'", field="name")
    if kind not in RECIPIENT_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(RECIPIENT_KINDS)}", field="kind")
    if not purposes or any(p not in PURPOSES for p in purposes):
        raise InvalidInput(f"purposes must be a non-empty subset of {', '.join(PURPOSES)}", field="purposes")
    if not categories or any(c not in RELEASE_CATEGORIES for c in categories):
        raise InvalidInput(
            f"categories must be a non-empty subset of {', '.join(RELEASE_CATEGORIES)}", field="categories"
        )
    if session.scalar(select(Recipient.id).where(Recipient.name == name)) is not None:
        raise Conflict(f"recipient {name!r} exists", field="name")
    recipient = Recipient(
        name=name,
        kind=kind,
        purposes=sorted(set(purposes), key=PURPOSES.index),
        categories=sorted(set(categories), key=RELEASE_CATEGORIES.index),
        secret=secrets.token_hex(32),
        created_at=now or utcnow(),
    )
    session.add(recipient)
    session.flush()
    return recipient


def list_recipients(session: Session) -> list[Recipient]:
    """Every recipient, by name."""
    return list(session.scalars(select(Recipient).order_by(Recipient.name)))


# --- the lake ---------------------------------------------------------------------------------------


ACCOUNT_FACTS = pa.schema(
    [
        ("account_id", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("country", pa.string()),
        ("birth_year", pa.int16()),
        ("status", pa.string()),
        ("status_changed_at", pa.timestamp("us", tz="UTC")),
        ("protected", pa.bool_()),
    ]
)


def _accounts(lake: Lake) -> pa.Table:
    return lake.read("accounts", ACCOUNT_FACTS)


# --- the lake ---------------------------------------------------------------------------------------


def _open_lake(lake: Path | LakeSpec) -> Lake:
    """The lake to build from: a folder of Parquet folders, or Iceberg or Delta tables at a snapshot."""
    spec = lake if isinstance(lake, LakeSpec) else parquet_spec(lake)
    if spec.format == "parquet" and not Path(spec.path or "").is_dir():
        raise NotFound(f"no lake folder at {spec.path}", field="lake")
    return open_lake(spec)


def _check_lake(session: Session, lake: Lake) -> LakeCheck | None:
    """Run the full data-contract check unless these exact lake snapshots passed it before; returns the
    record to store when it newly passed."""
    from consentry.lake.check import check_lake

    fingerprint = lake.fingerprint
    if session.get(LakeCheck, fingerprint) is not None:
        return None
    report = check_lake(lake)
    if not report.ok:
        shown = "; ".join(f"{v.folder}: {v.message}" for v in report.violations[:3])
        more = f" (and {len(report.violations) - 3} more)" if len(report.violations) > 3 else ""
        raise InvalidInput(
            f"the lake fails the data-contract check: {shown}{more}; run 'consentry lake check' on it",
            field="lake",
        )
    files = sum(len(table.files) for table in lake.tables.values())
    return LakeCheck(fingerprint=fingerprint, path=lake.describe(), files=files, checked_at=utcnow())


# --- building ---------------------------------------------------------------------------------------


@dataclass
class _Steps:
    """Counts build steps and reports them to the caller's progress callback."""

    total: int
    progress: Progress | None
    done: int = 0
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    _current: str | None = None
    _since: float = 0.0

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        if self._current is not None:
            self.timings[self._current] = round(now - self._since, 3)
            self.done = min(self.done + 1, self.total)
        self._current, self._since = stage, now
        if self.progress is not None:
            self.progress(stage, self.done, self.total)

    def finish(self) -> None:
        """Report the end of the last step: ``("published", total, total)``."""
        self("published")
        self._current = None


@dataclass(frozen=True)
class _FutureAuthors:
    """Author facts computed on the worker thread (``engines.AuthorSource``)."""

    evaluated: Future[tuple[Authors, ConsentSnapshot]]
    names: Future[pa.Table]

    def ready(self) -> bool:
        return self.evaluated.done()

    def facts(self) -> pa.Table:
        return self.evaluated.result()[0].table

    def named(self) -> pa.Table:
        return self.names.result()


def _release_id(now: datetime) -> str:
    return f"rel-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _aware(at: datetime | None, field_name: str) -> datetime | None:
    if at is not None and at.tzinfo is None:
        raise InvalidInput(f"{field_name} must carry a time zone", field=field_name)
    return at


@dataclass(frozen=True)
class _Link:
    """A release of an incremental chain, detached from the session."""

    id: str
    path: str
    categories: tuple[str, ...]


def _held(
    session: Session, base: Release, categories: Sequence[str]
) -> tuple[dict[str, BitMap64], list[_Link]]:
    """What the recipient holds after ``base`` and the releases it builds on, per category."""
    chain: list[_Link] = []
    current: Release | None = base
    while current is not None:
        chain.append(_Link(current.id, current.path, tuple(current.categories)))
        current = session.get(Release, current.since_release) if current.since_release else None
    chain.reverse()
    held = {category: BitMap64() for category in categories}
    for release in chain:
        folder = Path(release.path)
        for category in categories:
            if category not in release.categories:
                continue
            held[category] |= lineage.read_bitmap(lineage.records_path(folder, category))
            removed = lineage.removed_path(folder, category)
            if removed.exists():
                held[category] -= lineage.read_bitmap(removed)
    return held, chain


@dataclass(frozen=True)
class CheckedRequest:
    """A build request that passed ``check_request``."""

    recipient: Recipient
    categories: list[str]
    as_of: datetime
    base: Release | None


def check_request(
    session: Session,
    *,
    recipient: str,
    purpose: str,
    categories: Sequence[str],
    out: Path,
    as_of: datetime | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    engine: str = "duckdb",
    since_release: str | None = None,
    now: datetime | None = None,
    block_when_overdue: bool = True,
    spark_master: str | None = None,
) -> CheckedRequest:
    """Every check of a build request that needs no lake scan (the API runs it before queueing).

    A suspended recipient gets no release, nor (with ``block_when_overdue``, the setting
    ``block_releases_when_overdue``) one with overdue revocations: ``Conflict`` naming ``recipient``."""
    now = now or utcnow()
    as_of = _aware(as_of, "as_of") or now
    since, until = _aware(since, "since"), _aware(until, "until")
    if as_of > now:
        raise InvalidInput("as_of must not be in the future", field="as_of")
    if since is not None and until is not None and since >= until:
        raise InvalidInput("--since must be before --until", field="since")
    if engine not in ENGINES:
        raise InvalidInput(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}", field="engine")
    if spark_master is not None:
        spark_master_options(spark_master, engine=engine)
    if purpose not in PURPOSES:
        raise InvalidInput(f"unknown purpose {purpose!r}; known: {', '.join(PURPOSES)}", field="purpose")
    wanted = list(dict.fromkeys(categories))
    if not wanted:
        raise InvalidInput("name at least one category", field="categories")
    for category in wanted:
        if category not in RELEASE_CATEGORIES:
            raise InvalidInput(
                f"unknown category {category!r}; releases hold {', '.join(RELEASE_CATEGORIES)}",
                field="categories",
            )
    target = get_recipient(session, recipient)
    from consentry.partners.service import check_can_receive

    check_can_receive(session, recipient=target, now=now, block_when_overdue=block_when_overdue)
    if purpose not in target.purposes:
        raise InvalidInput(
            f"recipient {target.name!r} may not receive data for {purpose!r} "
            f"(allowed: {', '.join(target.purposes)})",
            field="purpose",
        )
    refused = [c for c in wanted if c not in target.categories]
    if refused:
        raise InvalidInput(
            f"recipient {target.name!r} may not receive {', '.join(refused)} "
            f"(allowed: {', '.join(target.categories)})",
            field="categories",
        )
    base = None
    if since_release is not None:
        base = get_release(session, since_release)
        if base.recipient_id != target.id or base.purpose != purpose:
            raise InvalidInput(
                f"release {since_release} was not built for {target.name!r} and {purpose!r}",
                field="since_release",
            )
        if base.status != "published":
            raise InvalidInput(f"release {since_release} is {base.status}", field="since_release")
        if as_of < base.as_of:
            raise InvalidInput(
                f"as_of must not be earlier than that of release {since_release}", field="as_of"
            )
    writer.check_out(Path(out))
    return CheckedRequest(recipient=target, categories=wanted, as_of=as_of, base=base)


def build_release(
    database: Database,
    *,
    ctx: ConsentContext,
    recipient: str,
    purpose: str,
    categories: Sequence[str],
    lake: Path | LakeSpec,
    out: Path,
    as_of: datetime | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    engine: str = "duckdb",
    since_release: str | None = None,
    scrub_pii: bool | None = None,
    retention: Retention | None = None,
    license: str = "other",
    engine_options: Mapping[str, str] | None = None,
    spark_master: str | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    block_when_overdue: bool = True,
    on_publish: Callable[[Session, Release], None] | None = None,
) -> Release:
    """Build and publish a release; returns its stored row. Nothing is published unless everything
    succeeds (see the module docstring).

    ``lake`` is a folder of Parquet folders or a ``LakeSpec`` (Iceberg or Delta tables at a snapshot);
    the manifest records the snapshots read. ``spark_master`` (Spark engine) is ``local[N]``,
    ``spark://host:port``, ``sc://host:port`` (Spark Connect), ``yarn`` or ``k8s://...``.
    ``on_publish(session, release)`` runs in the transaction that records the release (a build job
    records its outcome there: published and succeeded are one commit)."""
    now = now or utcnow()
    retention = retention or Retention()
    out = Path(out)
    with database.read() as session:
        request = check_request(
            session,
            recipient=recipient,
            purpose=purpose,
            categories=categories,
            out=out,
            as_of=as_of,
            since=since,
            until=until,
            engine=engine,
            since_release=since_release,
            now=now,
            block_when_overdue=block_when_overdue,
            spark_master=spark_master,
        )
        target, wanted, as_of = request.recipient, request.categories, request.as_of
        steps = _Steps(total=4 + STEPS_PER_CATEGORY * len(wanted), progress=progress)
        prior: dict[str, BitMap64] | None = None
        chain: list[_Link] = []
        if request.base is not None:
            prior, chain = _held(session, request.base, wanted)
        steps("check lake")
        source = _open_lake(lake)
        lake_check = _check_lake(session, source)
        kind, secret, recipient_id = target.kind, bytes.fromhex(target.secret), target.id
        recipient_name = target.name
    covering = covering_settings(ctx.catalog, kind=kind, purpose=purpose, categories=wanted)
    keys = sorted({key for keys in covering.values() for key in keys})

    def consent() -> tuple[Authors, ConsentSnapshot]:
        """The author facts from one consent snapshot (whose head the manifest records); runs on a
        worker thread while the engine reads the records. The events are not kept."""
        if ctx.log is None:
            raise IntegrityFailure("a release cites a checkpoint of the transparency log; none is configured")
        publish(
            database, ctx.log, force=True
        )  # a checkpoint of the ledger as it is now, cosigned if it can be
        snapshot = read_snapshot(database, settings=keys, as_of=as_of, log_key=ctx.log.signer.vkey)
        facts = author_facts(
            with_database_status(_accounts(source), snapshot.closed_accounts),
            snapshot.events,
            kind=kind,
            purpose=purpose,
            categories=wanted,
            as_of=as_of,
            policies=list(snapshot.policies),
            catalog=ctx.catalog,
            jurisdictions=ctx.jurisdictions,
        )
        return facts, replace(snapshot, events=snapshot.events.schema.empty_table())

    scrub = (kind == "third_party") if scrub_pii is None else scrub_pii
    release_id = _release_id(now)
    writer.clean_stale(out.parent if out.parent != Path() else Path.cwd())
    staging = writer.new_staging(out)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consent")
    evaluated = pool.submit(consent)  # one worker: the pseudonyms start once the facts are ready
    named = pool.submit(lambda: with_pseudonyms(evaluated.result()[0], secret))
    try:
        jobs = tuple(
            CategoryJob(
                spec=SPECS[category],
                files=source.data_files(category, scratch=staging / WORK / "lake"),
                out_dir=staging / "data" / category,
                cutoff=retention.cutoff(category, as_of),
                prior=None if prior is None else lineage.ids_of(prior[category]),
            )
            for category in wanted
        )
        work = staging / WORK
        steps("start engine")
        outcomes = get_engine(engine).run(
            EngineJob(
                window=Window(as_of=as_of, since=since, until=until),
                categories=jobs,
                authors=_FutureAuthors(evaluated, named),
                scrub_pii=scrub,
                work_dir=work,
                options=spark_master_options(spark_master, engine=engine, options=engine_options or {}),
            ),
            step=steps,
        )
        steps("manifest")
        snapshot = evaluated.result()[1]
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sha256") as hashing:
            manifest = _finish_folder(
                staging,
                outcomes,
                release_id=release_id,
                recipient={"name": recipient_name, "kind": kind},
                purpose=purpose,
                categories=wanted,
                window=Window(as_of=as_of, since=since, until=until),
                engine=engine,
                lake=source.provenance(),
                chain=chain,
                covering=covering,
                policies=[
                    {
                        "version": p.version,
                        "effective_at": p.effective_at.isoformat(),
                        "applies_to": p.applies_to,
                        "title": p.title,
                    }
                    for p in snapshot.policies
                    if p.effective_at <= as_of
                ],
                head=snapshot.head,
                checkpoint=snapshot.checkpoint,
                events=snapshot.events_considered,
                scrub=scrub,
                retention=retention,
                license=license,
                now=now,
                hashing=hashing,
            )
        shutil.rmtree(work, ignore_errors=True)
        manifest_bytes = write_manifest(staging / writer.MANIFEST, manifest)
        steps("publish")
        writer.fsync_tree(staging)
        row = Release(
            id=release_id,
            recipient_id=recipient_id,
            purpose=purpose,
            categories=wanted,
            as_of=as_of,
            since=since,
            until=until,
            since_release=since_release,
            engine=engine,
            status="published",
            path=str(out.resolve()),
            manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
            rows=sum(manifest["rows"].values()),
            excluded=sum(sum(v.values()) for v in manifest["excluded"].values()),
            removals=sum(manifest["incremental"]["removals"].values()),
            created_at=now,
        )
        published = False
        try:
            with database.write() as session:
                session.add(row)
                if lake_check is not None and session.get(LakeCheck, lake_check.fingerprint) is None:
                    session.add(lake_check)
                session.flush()
                if on_publish is not None:
                    on_publish(session, row)
                writer.publish(staging, out)
                published = True
        except BaseException:
            if published:
                shutil.rmtree(out, ignore_errors=True)
            raise
        steps.finish()
        return row
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _finish_folder(
    staging: Path,
    outcomes: Mapping[str, CategoryOutcome],
    *,
    release_id: str,
    recipient: dict[str, str],
    purpose: str,
    categories: list[str],
    window: Window,
    engine: str,
    lake: Mapping[str, Any],
    chain: list[_Link],
    covering: Mapping[str, tuple[str, ...]],
    policies: list[dict[str, Any]],
    head: dict[str, Any],
    checkpoint: dict[str, Any] | None,
    events: int,
    scrub: bool,
    retention: Retention,
    license: str,
    now: datetime,
    hashing: ThreadPoolExecutor,
) -> dict[str, Any]:
    """Name the shards, write lineage and removals, and return the manifest (without writing it).

    The shards' SHA-256 digests and the (author, record) index are computed and written on ``hashing``'s
    threads while the bitmaps are built (hashing and writing large blocks leave the interpreter free)."""
    digests: dict[Path, Future[str]] = {}
    rows: dict[str, int] = {}
    removal_counts: dict[str, int] = {}
    removal_tables: list[pa.Table] = []
    for category in categories:
        outcome = outcomes[category]
        spec = SPECS[category]
        folder = staging / "data" / category
        try:
            shards = writer.place_shards(outcome.shards, folder, spec.schema)
        except IntegrityFailure as error:
            raise IntegrityFailure(f"{engine} wrote {category}: {error.detail}", field="engine") from error
        digests.update({shard: hashing.submit(writer.sha256_file, shard) for shard in shards})
        written = sum(writer.parquet_rows(shard) for shard in shards)
        if written != outcome.rows:
            raise IntegrityFailure(
                f"{engine} wrote {written} {category} rows but included {outcome.rows}", field="engine"
            )
        rows[category] = written
        by_author = hashing.submit(  # mostly writing: beside the bitmaps
            lineage.write_by_author,
            lineage.by_author_path(staging, category),
            author_ids=outcome.author_ids,
            record_ids=outcome.record_ids,
        )
        lineage.write_bitmap(lineage.records_path(staging, category), lineage.bitmap_of(outcome.record_ids))
        lineage.write_bitmap(lineage.authors_path(staging, category), lineage.bitmap_of(outcome.author_ids))
        by_author.result()
        removal_counts[category] = len(outcome.removed_ids)
        if chain:
            removed = lineage.bitmap_of(outcome.removed_ids)
            lineage.write_bitmap(lineage.removed_path(staging, category), removed)
            delivered_by = np.full(len(outcome.removed_ids), "", dtype=object)
            for release in chain:  # the latest release of the chain that delivered each record
                path = lineage.records_path(Path(release.path), category)
                if category in release.categories and path.exists():
                    holds = lineage.ids_of(lineage.read_bitmap(path) & removed)
                    delivered_by[np.isin(outcome.removed_ids, holds)] = release.id
            removal_tables.append(
                pa.table(
                    {
                        "category": pa.array([category] * len(outcome.removed_ids), pa.string()),
                        "id": pa.array(outcome.removed_ids, pa.int64()),
                        "reason": pa.array(outcome.removed_reasons, pa.string()),
                        "release": pa.array(delivered_by.tolist(), pa.string()),
                    },
                    schema=REMOVALS_SCHEMA,
                )
            )
    if chain:
        table = pa.concat_tables(removal_tables) if removal_tables else REMOVALS_SCHEMA.empty_table()
        pq.write_table(
            table.sort_by([("category", "ascending"), ("id", "ascending")]),
            staging / REMOVALS,
            compression="zstd",
        )
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "release_id": release_id,
        "created_at": now.isoformat(),
        "recipient": recipient,
        "purpose": purpose,
        "categories": categories,
        "as_of": window.as_of.isoformat(),
        "window": {
            "since": window.since.isoformat() if window.since else None,
            "until": window.until.isoformat() if window.until else None,
        },
        "engine": engine,
        "lake": dict(lake),
        "incremental": {
            "since_release": chain[-1].id if chain else None,
            "chain": [release.id for release in chain],
            "already_held": {c: outcomes[c].already_held for c in categories},
            "removals": removal_counts,
        },
        "consent": {
            "settings": {c: list(covering[c]) for c in categories},
            "policies": policies,
            "ledger_head": head,
            "checkpoint": checkpoint,
            "events_considered": events,
        },
        "transforms": {
            "pseudonym": PSEUDONYM_SCHEME,
            "pii_scrubbing": scrub,
            "links": "reply_to and quote_of naming an ineligible record are null",
        },
        "retention_days": retention.describe(),
        "rows": rows,
        "excluded": {c: dict(outcomes[c].excluded) for c in categories},
        "schema": {c: [{"name": f.name, "type": str(f.type)} for f in SPECS[c].schema] for c in categories},
        "license": license,
        "consentry_version": __version__,
    }
    (staging / README).write_text(dataset_card(manifest), "utf-8")
    files = []
    for path in sorted(
        p for p in staging.rglob("*") if p.is_file() and WORK not in p.relative_to(staging).parts
    ):
        entry: dict[str, Any] = {
            "path": path.relative_to(staging).as_posix(),
            "bytes": path.stat().st_size,
            "sha256": digests[path].result() if path in digests else writer.sha256_file(path),
        }
        if path.suffix == ".parquet":
            entry["rows"] = writer.parquet_rows(path)
        files.append(entry)
    manifest["files"] = files
    return manifest


# --- reading releases -------------------------------------------------------------------------------


def get_release(session: Session, release_id: str) -> Release:
    """One release, or ``NotFound``."""
    release = session.get(Release, release_id)
    if release is None:
        raise NotFound(f"no release {release_id!r}", field="release_id")
    return release


def read_manifest(release: Release) -> dict[str, Any]:
    """The manifest of a release, from its folder."""
    path = Path(release.path) / writer.MANIFEST
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise IntegrityFailure(f"cannot read the manifest of {release.id}: {error}", field="path") from error
    return data


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``verify_release``."""

    release_id: str
    files: int
    rows: dict[str, int]
    problems: tuple[str, ...]
    history: str | None = None
    """What was established about the ledger history the release cites (its checkpoint)."""

    @property
    def ok(self) -> bool:
        """True when every checksum and row count matches and the cited history still holds."""
        return not self.problems


def verify_release(
    session: Session, *, release_id: str, log: LogView | None = None, trust: Trust | None = None
) -> VerifyReport:
    """Recompute every file's size, SHA-256 and row count and compare with the manifest (and the
    manifest's own SHA-256 with the one recorded at publication), then prove the checkpoint the
    manifest cites consistent with the log's current one (``log``: default the database's own log;
    ``trust``: default the log key the manifest names)."""
    files = _verify_files(session, release_id=release_id)
    manifest_path = Path(get_release(session, release_id).path) / writer.MANIFEST
    if not manifest_path.exists():
        return files
    history, problem = verify_history(
        read_manifest(get_release(session, release_id)), log=log or LocalLog(session), trust=trust
    )
    problems = files.problems if problem is None else (*files.problems, problem)
    return replace(files, problems=problems, history=history)


def verify_history(
    manifest: Mapping[str, Any], *, log: LogView, trust: Trust | None
) -> tuple[str | None, str | None]:
    """``(what was established, problem)`` about the ledger history a manifest cites."""
    consent = manifest.get("consent") or {}
    cited = consent.get("checkpoint")
    if not cited:
        head = consent.get("ledger_head") or {}
        return (
            f"the manifest predates checkpoints: it names ledger head seq {head.get('seq')} hash "
            f"{head.get('hash')}, which cannot be proven against the log (rebuild to cite a checkpoint)",
            None,
        )
    try:
        checked = cite.check(cited, log=log, trust=trust)
    except ConsentryError as error:
        return None, f"ledger history: {error.detail}"
    return checked.summary, None


def _verify_files(session: Session, *, release_id: str) -> VerifyReport:
    release = get_release(session, release_id)
    folder = Path(release.path)
    problems: list[str] = []
    manifest_path = folder / writer.MANIFEST
    if not manifest_path.exists():
        return VerifyReport(release.id, 0, {}, (f"{manifest_path} is missing",))
    if writer.sha256_file(manifest_path) != release.manifest_sha256:
        problems.append("manifest.json differs from the one published")
    manifest = read_manifest(release)
    rows: dict[str, int] = dict.fromkeys(manifest.get("categories", []), 0)
    listed = set()
    for entry in manifest.get("files", []):
        relative = str(entry["path"])
        listed.add(relative)
        path = folder / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
            continue
        if path.stat().st_size != entry["bytes"]:
            problems.append(f"{relative}: {path.stat().st_size} bytes, manifest says {entry['bytes']}")
        if writer.sha256_file(path) != entry["sha256"]:
            problems.append(f"{relative}: SHA-256 differs from the manifest")
        if "rows" in entry:
            try:
                count = writer.parquet_rows(path)
            except (OSError, pa.ArrowException) as error:
                problems.append(f"{relative}: unreadable Parquet ({error})")
                continue
            if count != entry["rows"]:
                problems.append(f"{relative}: {count} rows, manifest says {entry['rows']}")
            parts = relative.split("/")
            if len(parts) == 3 and parts[0] == "data" and parts[1] in rows:
                rows[parts[1]] += count
    for category, expected in manifest.get("rows", {}).items():
        if rows.get(category) != expected:
            problems.append(f"{category}: {rows.get(category)} rows in files, manifest says {expected}")
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative != writer.MANIFEST and relative not in listed:
            problems.append(f"{relative} is not listed in the manifest")
    return VerifyReport(release.id, len(listed), rows, tuple(problems))


def find_releases(session: Session, *, category: str, record_id: int) -> list[Release]:
    """Published releases that delivered record ``record_id`` of ``category`` (from their lineage)."""
    found = []
    for release in session.scalars(select(Release).where(Release.status == "published")):
        path = lineage.records_path(Path(release.path), category)
        if category in release.categories and path.exists() and record_id in lineage.read_bitmap(path):
            found.append(release)
    return found


# --- build jobs (run by ``consentry worker``) ------------------------------------------------------

JOB_KIND = "dataset_build"


def create_job(
    session: Session, *, params: Mapping[str, Any], created_by: str, max_attempts: int = 3
) -> BuildJob:
    """Queue a build for the worker (the caller commits)."""
    job = BuildJob(
        status="queued",
        params=dict(params),
        stage="queued",
        done=0,
        total=0,
        created_by=created_by,
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    job_queue.enqueue(session, kind=JOB_KIND, ref=str(job.id), max_attempts=max_attempts)
    return job


def get_job(session: Session, job_id: int) -> BuildJob:
    """One build job, or ``NotFound``."""
    job = session.get(BuildJob, job_id)
    if job is None:
        raise NotFound(f"no build job {job_id}", field="job_id")
    return job


def abandon_job(session: Session, ref: str, error: str) -> None:
    """Mark a build failed that the worker gave up on (``jobs.runner.Handler.abandon``)."""
    job = session.get(BuildJob, int(ref))
    if job is not None and job.status in job_queue.ACTIVE:
        job.status, job.error, job.finished_at = "failed", error, utcnow()


def run_job(
    database: Database,
    *,
    job_id: int,
    ctx: ConsentContext,
    build: Callable[..., Release] | None = None,
    min_interval: float = 0.5,
    block_when_overdue: bool = True,
    lease: Lease | None = None,
) -> None:
    """Run a build job, recording progress (at most every ``min_interval`` seconds) and the outcome on
    its row, each through ``lease`` (fenced by the worker's claim). Never raises for a failed build:
    failures are recorded on the job. A job already finished (its worker died after recording it) only
    has its outcome recorded on the claim again."""
    lease = lease or Lease(database)
    with lease.write() as session:
        job = get_job(session, job_id)
        if job.status not in job_queue.ACTIVE:
            lease.finish(session, status=job.status, error=job.error)
            return
        params = dict(job.params)
        job.status, job.stage, job.started_at = "running", "starting", utcnow()

    def record(stage: str, done: int, total: int) -> None:
        lease.check()
        if lease.finished:
            return
        with lease.write() as session:
            job = get_job(session, job_id)
            job.stage, job.done, job.total = stage, done, total

    def published(session: Session, release: Release) -> None:
        lease.renew(session)
        job = get_job(session, job_id)
        job.status, job.stage, job.release_id, job.finished_at = (
            "succeeded",
            "published",
            release.id,
            utcnow(),
        )
        job.done = job.total = max(job.total, job.done)
        lease.finish(session, status="succeeded")

    try:
        (build or build_release)(
            database,
            ctx=ctx,
            progress=throttled(record, min_interval=min_interval),
            block_when_overdue=params.get("block_when_overdue", block_when_overdue),
            on_publish=published,
            **_build_arguments(params),
        )
    except ConsentryError as error:
        _failed(lease, job_id, error.detail)
    except Exception as error:  # the job records any failure; the worker keeps running
        _failed(lease, job_id, f"{error.__class__.__name__}: {error}")


def _failed(lease: Lease, job_id: int, error: str) -> None:
    with lease.write() as session:
        job = get_job(session, job_id)
        job.status, job.error, job.finished_at = "failed", error, utcnow()
        lease.finish(session, status="failed", error=error)


def _build_arguments(params: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``build_release`` from a job's stored (JSON) parameters."""
    arguments: dict[str, Any] = {
        "recipient": params["recipient"],
        "purpose": params["purpose"],
        "categories": list(params["categories"]),
        "lake": LakeSpec.from_params(params),
        "out": Path(params["out"]),
        "engine": params.get("engine", "duckdb"),
        "spark_master": params.get("spark_master"),
        "since_release": params.get("since_release"),
        "scrub_pii": params.get("scrub_pii"),
        "retention": Retention(dict(params.get("retention_days") or {})),
        "license": params.get("license", "other"),
    }
    for key in ("as_of", "since", "until"):
        value = params.get(key)
        arguments[key] = datetime.fromisoformat(value) if value else None
    return arguments
