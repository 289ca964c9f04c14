"""Building a release.

A build checks the request and the lake and reads the recipient's secret, then runs an engine into a
staging folder while a worker thread reads the consent snapshot (ledger head, policies, and the events
up to ``as_of`` and that head: ``datasets.snapshot``) and evaluates the author facts over the lake's
``accounts/``; it writes lineage, manifest and dataset card, and publishes by one atomic rename while
the release row is recorded (one commit). Any failure before the rename leaves nothing published.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyroaring import BitMap64
from sqlalchemy.orm import Session

from consentry.consent.service import ConsentContext
from consentry.datasets import lineage, writer
from consentry.datasets.eligibility import (
    SPECS,
    Authors,
    Retention,
    Window,
    author_facts,
    covering_settings,
    with_database_status,
    with_pseudonyms,
)
from consentry.datasets.engines import STEPS_PER_CATEGORY, CategoryJob, EngineJob, Progress, get_engine
from consentry.datasets.engines.spark import spark_master_options
from consentry.datasets.folder import WORK, finish_folder
from consentry.datasets.manifest import ReleaseFacts, write_manifest
from consentry.datasets.models import LakeCheck, Release
from consentry.datasets.request import CheckedRequest, Link, check_request, held_records
from consentry.datasets.snapshot import ConsentSnapshot, read_snapshot
from consentry.db import Database, utcnow
from consentry.errors import IntegrityFailure, InvalidInput, NotFound
from consentry.lake.source import Lake, LakeSpec, open_lake, parquet_spec
from consentry.transparency.publisher import publish

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


@dataclass(frozen=True)
class _Plan:
    """What the build read from the database before the lake scan, detached from the session."""

    request: CheckedRequest
    purpose: str
    window: Window
    source: Lake
    lake_check: LakeCheck | None
    kind: str
    secret: bytes
    recipient_id: int
    recipient_name: str
    covering: dict[str, tuple[str, ...]]
    prior: dict[str, BitMap64] | None
    chain: list[Link]


def _release_id(now: datetime) -> str:
    return f"rel-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


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
    succeeds (see the module docstring). ``lake``: a folder of Parquet folders or a ``LakeSpec`` (Iceberg
    or Delta tables at a snapshot, recorded in the manifest). ``spark_master`` (Spark engine):
    ``local[N]``, ``spark://host:port``, ``sc://host:port`` (Spark Connect), ``yarn`` or ``k8s://...``.
    ``on_publish(session, release)`` runs in the transaction that records the release (a build job
    records its outcome there: published and succeeded are one commit)."""
    now, retention, out = now or utcnow(), retention or Retention(), Path(out)
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
        steps = _Steps(total=4 + STEPS_PER_CATEGORY * len(request.categories), progress=progress)
        plan = _plan(
            session, request, ctx=ctx, purpose=purpose, since=since, until=until, lake=lake, steps=steps
        )
    scrub = (plan.kind == "third_party") if scrub_pii is None else scrub_pii
    writer.clean_stale(out.parent if out.parent != Path() else Path.cwd())
    staging = writer.new_staging(out)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consent")
    evaluated = pool.submit(_consent, database, ctx, plan)  # one worker: pseudonyms once facts are ready
    named = pool.submit(lambda: with_pseudonyms(evaluated.result()[0], plan.secret))
    try:
        manifest, manifest_bytes = _build_folder(
            staging,
            plan,
            _FutureAuthors(evaluated, named),
            engine=engine,
            options=spark_master_options(spark_master, engine=engine, options=engine_options or {}),
            scrub=scrub,
            retention=retention,
            license=license,
            now=now,
            steps=steps,
        )
        row = _release_row(plan, manifest, manifest_bytes, since_release=since_release, out=out, now=now)
        _publish(database, row, plan.lake_check, staging=staging, out=out, on_publish=on_publish)
        steps.finish()
        return row
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _build_folder(
    staging: Path,
    plan: _Plan,
    authors: _FutureAuthors,
    *,
    engine: str,
    options: Mapping[str, str],
    scrub: bool,
    retention: Retention,
    license: str,
    now: datetime,
    steps: _Steps,
) -> tuple[dict[str, Any], bytes]:
    """Run the engine into ``staging``, then write lineage, card and manifest and fsync the folder;
    returns the manifest and its bytes."""
    work = staging / WORK
    jobs = tuple(
        CategoryJob(
            spec=SPECS[category],
            files=plan.source.data_files(category, scratch=work / "lake"),
            out_dir=staging / "data" / category,
            cutoff=retention.cutoff(category, plan.window.as_of),
            prior=None if plan.prior is None else lineage.ids_of(plan.prior[category]),
        )
        for category in plan.request.categories
    )
    steps("start engine")
    outcomes = get_engine(engine).run(
        EngineJob(
            window=plan.window,
            categories=jobs,
            authors=authors,
            scrub_pii=scrub,
            work_dir=work,
            options=options,
        ),
        step=steps,
    )
    steps("manifest")
    facts = _facts(
        plan,
        authors.evaluated.result()[1],
        release_id=_release_id(now),
        engine=engine,
        scrub=scrub,
        retention=retention,
        license=license,
        now=now,
    )
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sha256") as hashing:
        manifest = finish_folder(staging, outcomes, facts=facts, chain=plan.chain, hashing=hashing)
    shutil.rmtree(work, ignore_errors=True)
    manifest_bytes = write_manifest(staging / writer.MANIFEST, manifest)
    steps("publish")
    writer.fsync_tree(staging)
    return manifest, manifest_bytes


def _plan(
    session: Session,
    request: CheckedRequest,
    *,
    ctx: ConsentContext,
    purpose: str,
    since: datetime | None,
    until: datetime | None,
    lake: Path | LakeSpec,
    steps: _Steps,
) -> _Plan:
    """Read what the build needs from the database (what the recipient holds, whether the lake passed
    the contract check before) and check the lake."""
    prior: dict[str, BitMap64] | None = None
    chain: list[Link] = []
    if request.base is not None:
        prior, chain = held_records(session, request.base, request.categories)
    steps("check lake")
    source = _open_lake(lake)
    lake_check = _check_lake(session, source)
    target = request.recipient
    covering = covering_settings(
        ctx.catalog, kind=target.kind, purpose=purpose, categories=request.categories
    )
    return _Plan(
        request=request,
        purpose=purpose,
        window=Window(as_of=request.as_of, since=since, until=until),
        source=source,
        lake_check=lake_check,
        kind=target.kind,
        secret=bytes.fromhex(target.secret),
        recipient_id=target.id,
        recipient_name=target.name,
        covering=covering,
        prior=prior,
        chain=chain,
    )


def _consent(database: Database, ctx: ConsentContext, plan: _Plan) -> tuple[Authors, ConsentSnapshot]:
    """The author facts from one consent snapshot (whose head the manifest records); runs on a worker
    thread while the engine reads the records. The events are not kept."""
    if ctx.log is None:
        raise IntegrityFailure("a release cites a checkpoint of the transparency log; none is configured")
    publish(database, ctx.log, force=True)  # a checkpoint of the ledger as it is now, cosigned if it can be
    categories, as_of = plan.request.categories, plan.window.as_of
    keys = sorted({key for keys in plan.covering.values() for key in keys})
    snapshot = read_snapshot(database, settings=keys, as_of=as_of, log_key=ctx.log.signer.vkey)
    facts = author_facts(
        with_database_status(plan.source.read("accounts", ACCOUNT_FACTS), snapshot.closed_accounts),
        snapshot.events,
        kind=plan.kind,
        purpose=plan.purpose,
        categories=categories,
        as_of=as_of,
        policies=list(snapshot.policies),
        catalog=ctx.catalog,
        jurisdictions=ctx.jurisdictions,
    )
    return facts, replace(snapshot, events=snapshot.events.schema.empty_table())


def _facts(
    plan: _Plan,
    snapshot: ConsentSnapshot,
    *,
    release_id: str,
    engine: str,
    scrub: bool,
    retention: Retention,
    license: str,
    now: datetime,
) -> ReleaseFacts:
    """What the manifest records about the build besides the engine's outcome."""
    as_of = plan.window.as_of
    return ReleaseFacts(
        release_id=release_id,
        created_at=now,
        recipient={"name": plan.recipient_name, "kind": plan.kind},
        purpose=plan.purpose,
        categories=plan.request.categories,
        window=plan.window,
        engine=engine,
        lake=plan.source.provenance(),
        chain=tuple(link.id for link in plan.chain),
        covering=plan.covering,
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
    )


def _release_row(
    plan: _Plan,
    manifest: Mapping[str, Any],
    manifest_bytes: bytes,
    *,
    since_release: str | None,
    out: Path,
    now: datetime,
) -> Release:
    """The registry row of a finished release folder."""
    return Release(
        id=manifest["release_id"],
        recipient_id=plan.recipient_id,
        purpose=plan.purpose,
        categories=plan.request.categories,
        as_of=plan.window.as_of,
        since=plan.window.since,
        until=plan.window.until,
        since_release=since_release,
        engine=manifest["engine"],
        status="published",
        path=str(out.resolve()),
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        rows=sum(manifest["rows"].values()),
        excluded=sum(sum(v.values()) for v in manifest["excluded"].values()),
        removals=sum(manifest["incremental"]["removals"].values()),
        created_at=now,
    )


def _publish(
    database: Database,
    row: Release,
    lake_check: LakeCheck | None,
    *,
    staging: Path,
    out: Path,
    on_publish: Callable[[Session, Release], None] | None,
) -> None:
    """Record the release (and the lake's passed check) and rename the folder into place, in one
    transaction: a rename that happened before a failed commit is undone."""
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
