"""Account data exports (GDPR Art. 15 access and Art. 20 portability): one ZIP of JSON documents.

An account holder asks for an export (``request_export``, which queues a job); ``consentry worker`` runs
it (``run_job``) with ``write_export``, which reads everything in one read transaction (a consistent
snapshot: ``REPEATABLE READ`` on PostgreSQL, a WAL snapshot on SQLite), streams each section into the ZIP
page by page (memory stays flat for large accounts), writes a temporary file next to the target, fsyncs
it and renames it into place: a reader sees the whole file or none.

What the ZIP holds (``SECTIONS``; every timestamp is UTC ISO 8601, ``.jsonl`` files hold one JSON object
per line, oldest first)::

    manifest.json                 schema, schema_version, generated_at, account, ledger head, the latest
                                  checkpoint of the transparency log, and per file
                                  its record count, size and SHA-256
    README.txt                    what each file means
    account.json                  the profile: handle, created_at, country (and jurisdiction group),
                                  birth_year, protected, status
    settings.json                 every setting: value, basis (explicit or default, minor, inactive...),
                                  the policy version and ledger seq behind it
    consent_history.jsonl         every ledger event of the account (seq, setting, value, source, client,
                                  policy_version, recorded_at, prev_hash, hash)
    receipts.jsonl                the signed receipt of each event (verify offline with receipt-key.json)
    receipt-key.json              the operator's public receipt key (JWK Set)
    posts.jsonl                   every post the account wrote; a deleted post keeps its metadata (ids,
                                  times, visibility, links, media) and its text is null
    assistant_interactions.jsonl  every exchange with the assistant; deleted ones without prompt/response
    follows.jsonl                 accounts it follows and accounts following it (or asking to)
    blocks.jsonl                  accounts it blocks (not who blocks it: that is the other account's data)
    likes.jsonl, reposts.jsonl    posts it liked or reposted (ids and times only)
    notifications.jsonl           messages for it (policy changes and the like)
    data_usage.json               releases that delivered its records, and their revocations

Nothing of any other account is exported beyond the id and handle of accounts it follows, is followed by
or blocks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from consentry import __version__
from consentry.consent import ledger
from consentry.consent.models import ConsentEvent, Notification, PolicyVersion
from consentry.consent.receipts import build_receipt
from consentry.consent.service import ConsentContext, settings_view
from consentry.db import Database, utcnow
from consentry.errors import Conflict, ConsentryError, Forbidden, Gone, InvalidInput, NotFound
from consentry.exports.models import ExportJob
from consentry.jobs import service as job_queue
from consentry.jobs.runner import Lease
from consentry.progress import throttled
from consentry.social.models import Account, AssistantInteraction, Block, Follow, Like, Post, Repost
from consentry.social.service import get_account
from consentry.transparency.cite import latest_citation

log = logging.getLogger(__name__)

SCHEMA = "consentry.account-export"
SCHEMA_VERSION = 1
EXPIRES_AFTER = timedelta(days=7)
"""A finished export can be downloaded this long; then its file is deleted."""
STALE_AFTER = timedelta(hours=1)
"""A job queued or running this long without finishing is taken as abandoned (its process died)."""
PAGE = 2_000
ACTIVE = ("queued", "running")
JOB_KIND = "account_export"
SCOPES = ("account", "linked")
Progress = Callable[[str, int, int], None]


# --- jobs -------------------------------------------------------------------------------------------


def new_job_id() -> str:
    """A random export id: says nothing about other exports."""
    return "exp_" + secrets.token_hex(12)


def check_own(account_id: int, requested: int | None) -> None:
    """An account holder may only export their own account."""
    if requested is not None and requested != account_id:
        raise Forbidden(
            "an export can only be requested for your own account; leave account_id out (operators "
            "export any account with 'consentry account export ACCOUNT_ID --out FILE')",
            field="account_id",
        )


def request_export(
    session: Session,
    *,
    account_id: int,
    requested_by: str,
    now: datetime | None = None,
    max_attempts: int = 3,
    scope: str = "account",
) -> tuple[ExportJob, bool]:
    """Queue an export of ``account_id`` for the worker (the caller commits); returns the job and
    whether it is new. An account has at most one export of each scope (``account``, or ``linked``: with
    every linked account's files) in progress: asking again returns it."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", field="scope")
    now = now or utcnow()
    account = get_account(session, account_id)
    if account.status == "deleted":
        raise Gone(f"account {account_id} is deleted", field="account_id")
    active = session.scalars(
        select(ExportJob)
        .where(ExportJob.account_id == account_id, ExportJob.scope == scope, ExportJob.status.in_(ACTIVE))
        .order_by(ExportJob.created_at.desc())
    ).all()
    for job in active:
        if job.created_at > now - STALE_AFTER:
            return job, False
        job.status, job.error, job.finished_at = "failed", "abandoned: the job did not finish", now
        job_queue.fail(session, kind=JOB_KIND, ref=job.id, error=job.error, now=now)
    job = ExportJob(
        id=new_job_id(),
        account_id=account_id,
        status="queued",
        stage="queued",
        done=0,
        total=0,
        requested_by=requested_by,
        created_at=now,
        scope=scope,
    )
    session.add(job)
    session.flush()
    job_queue.enqueue(session, kind=JOB_KIND, ref=job.id, max_attempts=max_attempts)
    return job, True


def get_job(session: Session, *, account_id: int, job_id: str) -> ExportJob:
    """One of the account's exports; another account's export is ``NotFound`` like a missing one."""
    job = session.get(ExportJob, job_id)
    if job is None or job.account_id != account_id:
        raise NotFound(f"no export {job_id!r} of this account", field="export_id")
    return job


def latest_job(session: Session, *, account_id: int) -> ExportJob:
    """The account's most recent export, or ``NotFound``."""
    job = session.scalars(
        select(ExportJob).where(ExportJob.account_id == account_id).order_by(ExportJob.created_at.desc())
    ).first()
    if job is None:
        raise NotFound("this account has no export yet; start one with POST /v1/me/export", field="export")
    return job


def list_jobs(session: Session, *, account_id: int, limit: int = 20) -> list[ExportJob]:
    """The account's exports, newest first."""
    if not 1 <= limit <= 100:
        raise InvalidInput("limit must be between 1 and 100", field="limit")
    query = select(ExportJob).where(ExportJob.account_id == account_id)
    return list(session.scalars(query.order_by(ExportJob.created_at.desc()).limit(limit)))


def download_path(job: ExportJob, *, now: datetime | None = None) -> Path:
    """The file of a finished export: ``Conflict`` while it runs or when it failed, ``Gone`` once it
    expired or its file was removed."""
    now = now or utcnow()
    if job.status != "succeeded":
        hint = "; poll it until status is succeeded" if job.status in ACTIVE else f": {job.error}"
        raise Conflict(f"export {job.id} is {job.status}{hint}", field="export_id")
    if job.path is None or (job.expires_at is not None and job.expires_at <= now):
        raise Gone(f"export {job.id} expired; request a new one", field="export_id")
    path = Path(job.path)
    if not path.is_file():
        raise Gone(f"the file of export {job.id} is no longer there; request a new one", field="export_id")
    return path


def exports_folder(home: Path, account_id: int) -> Path:
    """Where an account's export files live."""
    return Path(home) / "exports" / str(account_id)


def abandon_job(session: Session, ref: str, error: str) -> None:
    """Mark an export failed that the worker gave up on (``jobs.runner.Handler.abandon``)."""
    job = session.get(ExportJob, ref)
    if job is not None and job.status in ACTIVE:
        job.status, job.error, job.finished_at = "failed", error, utcnow()


def run_job(
    database: Database,
    *,
    job_id: str,
    ctx: ConsentContext,
    home: Path,
    min_interval: float = 0.5,
    lease: Lease | None = None,
) -> None:
    """Run an export job, recording progress (at most every ``min_interval`` seconds) and the outcome
    on its row, each through ``lease`` (fenced by the worker's claim). Never raises for a failed export:
    failures are recorded on the job."""
    lease = lease or Lease(database)
    with lease.write() as session:
        job = session.get(ExportJob, job_id)
        if job is None or job.status not in ACTIVE:
            status = "failed" if job is None else job.status
            lease.finish(session, status=status, error=None if job else f"no export {job_id}")
            return
        account_id, scope = job.account_id, job.scope
        job.status, job.stage, job.started_at = "running", "starting", utcnow()

    def update(**values: Any) -> None:
        with lease.write() as session:
            job = session.get(ExportJob, job_id)
            if job is None:
                raise NotFound(f"no export {job_id}", field="export_id")
            for key, value in values.items():
                setattr(job, key, value)
            if values.get("status") in ("succeeded", "failed"):
                lease.finish(session, status=values["status"], error=values.get("error"))

    def record(stage: str, done: int, total: int) -> None:
        lease.check()
        update(stage=stage, done=done, total=total)

    target = exports_folder(home, account_id) / f"{job_id}.zip"
    try:
        summary = write_export(
            database,
            account_id=account_id,
            ctx=ctx,
            out=target,
            progress=throttled(record, min_interval=min_interval),
            scope=scope,
        )
    except ConsentryError as error:
        update(status="failed", error=error.detail, finished_at=utcnow())
        return
    except Exception as error:  # the job records any failure; the worker keeps running
        log.exception("export %s failed", job_id)
        update(status="failed", error=f"{error.__class__.__name__}: {error}", finished_at=utcnow())
        return
    finished = utcnow()
    update(
        status="succeeded",
        stage="done",
        done=summary.records,
        total=summary.records,
        path=str(summary.path),
        size_bytes=summary.bytes,
        sha256=summary.sha256,
        finished_at=finished,
        expires_at=finished + EXPIRES_AFTER,
    )
    purge_expired(database)


def purge_expired(database: Database, *, now: datetime | None = None) -> int:
    """Delete the files of expired exports (their rows stay, without a path); returns how many."""
    now = now or utcnow()
    with database.write() as session:
        jobs = session.scalars(
            select(ExportJob).where(ExportJob.path.is_not(None), ExportJob.expires_at <= now)
        ).all()
        for job in jobs:
            if job.path:
                Path(job.path).unlink(missing_ok=True)
            job.path = None
        return len(jobs)


# --- writing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """One file of the export, as the manifest lists it."""

    name: str
    records: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ExportSummary:
    """A written export."""

    path: Path
    bytes: int
    sha256: str
    records: int
    files: list[FileEntry] = field(default_factory=list)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any, *, indent: int | None = None) -> bytes:
    """JSON bytes of ``value`` (datetimes as UTC ISO 8601)."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, indent=indent).encode()


class _Hashing:
    """Counts and hashes what is written to a ZIP member."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.raw.write(data)
        self.digest.update(data)
        self.bytes += len(data)


class _Writer:
    """Writes the members of the export ZIP and remembers each for the manifest."""

    def __init__(
        self, archive: zipfile.ZipFile, *, tick: Callable[[str, int], None], generated_at: datetime
    ) -> None:
        self.archive = archive
        self.tick = tick
        self.stamp = generated_at.astimezone(UTC).timetuple()[:6]
        self.files: list[FileEntry] = []

    def member(self, name: str) -> zipfile.ZipInfo:
        """A member dated ``generated_at`` (UTC), compressed, readable by everyone who has the file."""
        info = zipfile.ZipInfo(name, date_time=self.stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def raw(self, name: str, data: bytes, *, records: int = 1) -> None:
        with self.archive.open(self.member(name), "w") as out:
            out.write(data)
        self.files.append(FileEntry(name, records, len(data), hashlib.sha256(data).hexdigest()))

    def document(self, name: str, value: Any, *, records: int = 1) -> None:
        self.raw(name, dumps(value, indent=2) + b"\n", records=records)
        self.tick(name, records)

    def lines(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        count = 0
        with self.archive.open(self.member(name), "w", force_zip64=True) as raw:
            out = _Hashing(raw)
            buffer: list[bytes] = []
            for row in rows:
                buffer.append(dumps(row) + b"\n")
                count += 1
                if len(buffer) >= PAGE:
                    out.write(b"".join(buffer))
                    self.tick(name, len(buffer))
                    buffer.clear()
            if buffer:
                out.write(b"".join(buffer))
                self.tick(name, len(buffer))
        self.files.append(FileEntry(name, count, out.bytes, out.digest.hexdigest()))


def _stream(session: Session, query: Any) -> Iterator[Any]:
    yield from session.execute(query.execution_options(yield_per=PAGE))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _json_default(value)


def _profile(account: Account, ctx: ConsentContext) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "handle": account.handle,
        "created_at": account.created_at,
        "country": account.country,
        "jurisdiction": ctx.jurisdictions.group_of(account.country),
        "birth_year": account.birth_year,
        "protected": account.protected,
        "status": account.status,
        "status_changed_at": account.status_changed_at,
    }


def _posts(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    query = select(Post).where(Post.author_id == account_id).order_by(Post.id)
    for (post,) in _stream(session, query):
        deleted = post.deleted_at is not None
        yield {
            "post_id": post.id,
            "created_at": post.created_at,
            "text": None if deleted else post.text,
            "visibility": post.visibility,
            "reply_to": post.reply_to,
            "quote_of": post.quote_of,
            "media": post.media,
            "deleted_at": post.deleted_at,
        }


def _interactions(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    query = (
        select(AssistantInteraction)
        .where(AssistantInteraction.account_id == account_id)
        .order_by(AssistantInteraction.id)
    )
    for (row,) in _stream(session, query):
        deleted = row.deleted_at is not None
        yield {
            "interaction_id": row.id,
            "created_at": row.created_at,
            "prompt": None if deleted else row.prompt,
            "response": None if deleted else row.response,
            "deleted_at": row.deleted_at,
        }


def _follows(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    other = aliased(Account)
    following = (
        select(Follow.followee_id, other.handle, Follow.pending, Follow.created_at)
        .join(other, other.id == Follow.followee_id)
        .where(Follow.follower_id == account_id)
        .order_by(Follow.created_at, Follow.followee_id)
    )
    for other_id, handle, pending, created_at in _stream(session, following):
        yield {
            "direction": "following",
            "account_id": other_id,
            "handle": handle,
            "pending": pending,
            "created_at": created_at,
        }
    followers = (
        select(Follow.follower_id, other.handle, Follow.pending, Follow.created_at)
        .join(other, other.id == Follow.follower_id)
        .where(Follow.followee_id == account_id)
        .order_by(Follow.created_at, Follow.follower_id)
    )
    for other_id, handle, pending, created_at in _stream(session, followers):
        yield {
            "direction": "follower",
            "account_id": other_id,
            "handle": handle,
            "pending": pending,
            "created_at": created_at,
        }


def _blocks(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    query = (
        select(Block.blocked_id, Account.handle, Block.created_at)
        .join(Account, Account.id == Block.blocked_id)
        .where(Block.blocker_id == account_id)
        .order_by(Block.created_at, Block.blocked_id)
    )
    for blocked_id, handle, created_at in _stream(session, query):
        yield {"account_id": blocked_id, "handle": handle, "created_at": created_at}


def _marks(session: Session, model: type[Like] | type[Repost], account_id: int) -> Iterator[dict[str, Any]]:
    query = (
        select(model.post_id, model.created_at)
        .where(model.account_id == account_id)
        .order_by(model.created_at, model.post_id)
    )
    for post_id, created_at in _stream(session, query):
        yield {"post_id": post_id, "created_at": created_at}


def _notifications(session: Session, account_id: int) -> Iterator[dict[str, Any]]:
    query = select(Notification).where(Notification.account_id == account_id).order_by(Notification.id)
    for (row,) in _stream(session, query):
        yield {
            "id": row.id,
            "kind": row.kind,
            "payload": row.payload,
            "created_at": row.created_at,
            "delivered_at": row.delivered_at,
        }


def _events(session: Session, subject_key: str | None) -> list[ConsentEvent]:
    if subject_key is None:
        return []
    query = select(ConsentEvent).where(ConsentEvent.subject_key == subject_key).order_by(ConsentEvent.seq)
    return list(session.scalars(query))


def _history(events: list[ConsentEvent]) -> Iterator[dict[str, Any]]:
    for event in events:
        yield {
            "seq": event.seq,
            "setting": event.setting,
            "value": event.value,
            "source": event.source,
            "client": event.client,
            "policy_version": event.policy_version,
            "recorded_at": event.recorded_at,
            "subject_key": event.subject_key,
            "chosen_by": event.chosen_by,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        }


def _receipts(
    session: Session, events: list[ConsentEvent], *, jurisdiction: str, ctx: ConsentContext
) -> Iterator[dict[str, Any]]:
    titles: dict[int, str] = {
        version: title
        for version, title in session.execute(select(PolicyVersion.version, PolicyVersion.title))
    }
    for event in events:
        try:
            setting = ctx.catalog.get(event.setting)
        except InvalidInput:
            yield {"seq": event.seq, "receipt": None, "note": "the setting is no longer in the catalog"}
            continue
        receipt = build_receipt(
            event=event,
            setting=setting,
            jurisdiction=jurisdiction,
            operator_name=ctx.operator_name,
            operator_url=ctx.operator_url,
            policy_title=titles.get(event.policy_version) if event.policy_version is not None else None,
        )
        yield ctx.signer.sign(receipt)


def _data_usage(session: Session, account_id: int) -> list[Any]:
    from consentry.partners.usage import data_usage

    return list(data_usage(session, account_id=account_id))


def _counts(session: Session, account_id: int, subject_key: str | None) -> int:
    """How many records the export will hold (for progress)."""
    counts = [
        select(func.count()).select_from(Post).where(Post.author_id == account_id),
        select(func.count())
        .select_from(AssistantInteraction)
        .where(AssistantInteraction.account_id == account_id),
        select(func.count())
        .select_from(Follow)
        .where(or_(Follow.follower_id == account_id, Follow.followee_id == account_id)),
        select(func.count()).select_from(Block).where(Block.blocker_id == account_id),
        select(func.count()).select_from(Like).where(Like.account_id == account_id),
        select(func.count()).select_from(Repost).where(Repost.account_id == account_id),
        select(func.count()).select_from(Notification).where(Notification.account_id == account_id),
    ]
    total = sum(int(session.scalar(query) or 0) for query in counts)
    if subject_key is not None:
        events = select(func.count()).select_from(ConsentEvent).where(ConsentEvent.subject_key == subject_key)
        total += 2 * int(session.scalar(events) or 0)  # history and receipts
    return total + 6  # account, settings, receipt key, data usage, manifest, README


README = """Consentry account export (schema {schema} version {version})

Generated {generated_at} for account {account_id} by {operator}.
Every timestamp is UTC (ISO 8601). Files ending in .jsonl hold one JSON object per line, oldest first.
manifest.json lists every file with its record count, size and SHA-256.

account.json                  your profile
settings.json                 each data-sharing setting: its value now, and whether you chose it
                              (basis "explicit", with the ledger seq) or it is the policy default
consent_history.jsonl         every choice recorded in the consent ledger, with its chain hashes
receipts.jsonl                the signed receipt of each choice; verify them offline against
                              receipt-key.json (for example: consentry receipt verify FILE)
receipt-key.json              the operator's public receipt key
posts.jsonl                   your posts; deleted posts keep their metadata, their text is null
assistant_interactions.jsonl  your conversations with the assistant; deleted ones without text
follows.jsonl                 accounts you follow ("following") and that follow you ("follower")
blocks.jsonl                  accounts you block
likes.jsonl, reposts.jsonl    posts you liked or reposted
notifications.jsonl           messages to you, such as policy changes
data_usage.json               releases of data that included your records, and their revocations
"""

LINKED_README = """
linked/<account id>/          the same files (all but receipt-key.json) for each account linked with
                              yours when the export was made: {ids}
"""


def write_export(
    database: Database,
    *,
    account_id: int,
    ctx: ConsentContext,
    out: Path,
    progress: Progress | None = None,
    now: datetime | None = None,
    scope: str = "account",
) -> ExportSummary:
    """Write the export of ``account_id`` to ``out`` (a ZIP), atomically; returns what was written.

    ``scope`` ``linked`` adds, under ``linked/<id>/``, the files of every account with a confirmed link
    to it, read in the same snapshot."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.{secrets.token_hex(4)}.partial"
    try:
        with database.read() as session:
            if session.get_bind().dialect.name == "postgresql":  # one snapshot for every section
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            files = _write_zip(
                session, partial, account_id=account_id, ctx=ctx, progress=progress, now=now, scope=scope
            )
        with partial.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            os.fsync(handle.fileno())
        os.replace(partial, out)
        _fsync_folder(out.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ExportSummary(
        path=out,
        bytes=out.stat().st_size,
        sha256=digest,
        records=sum(f.records for f in files),
        files=files,
    )


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _sections(
    writer: _Writer,
    session: Session,
    *,
    account: Account,
    subject_key: str | None,
    ctx: ConsentContext,
    generated_at: datetime,
    cited: Any,
    prefix: str = "",
) -> None:
    """Write the files of one account (everything but the key, README and manifest) under ``prefix``."""
    account_id = account.id
    jurisdiction = ctx.jurisdictions.group_of(account.country)
    writer.document(prefix + "account.json", _profile(account, ctx))
    states = settings_view(session, account_id=account_id, ctx=ctx, at=generated_at)
    writer.document(
        prefix + "settings.json",
        {
            "as_of": generated_at,
            "settings": [
                {
                    "key": s.key,
                    "label": s.label,
                    "value": s.value,
                    "basis": s.basis,
                    "source": "explicit" if s.explicit else "default",
                    "policy_version": s.policy_version,
                    "seq": s.seq,
                }
                for s in states
            ],
        },
        records=len(states),
    )
    events = _events(session, subject_key)
    writer.lines(prefix + "consent_history.jsonl", _history(events))
    writer.lines(prefix + "receipts.jsonl", _receipts(session, events, jurisdiction=jurisdiction, ctx=ctx))
    if not prefix:
        writer.document("receipt-key.json", {"keys": [ctx.signer.jwk]})
    writer.lines(prefix + "posts.jsonl", _posts(session, account_id))
    writer.lines(prefix + "assistant_interactions.jsonl", _interactions(session, account_id))
    writer.lines(prefix + "follows.jsonl", _follows(session, account_id))
    writer.lines(prefix + "blocks.jsonl", _blocks(session, account_id))
    writer.lines(prefix + "likes.jsonl", _marks(session, Like, account_id))
    writer.lines(prefix + "reposts.jsonl", _marks(session, Repost, account_id))
    writer.lines(prefix + "notifications.jsonl", _notifications(session, account_id))
    usage = _data_usage(session, account_id)
    writer.document(prefix + "data_usage.json", {"releases": usage, "checkpoint": cited}, records=len(usage))


def _write_zip(
    session: Session,
    path: Path,
    *,
    account_id: int,
    ctx: ConsentContext,
    progress: Progress | None,
    now: datetime | None,
    scope: str = "account",
) -> list[FileEntry]:
    from consentry.links.service import linked_ids

    generated_at = now or utcnow()
    account = get_account(session, account_id)
    subject_key = ledger.subject_key_for(session, account_id, create=False)
    heads = ledger.heads(session)
    top = max(heads, key=lambda h: h.seq)
    head: tuple[int, str] | None = (top.seq, top.hash)
    cited = latest_citation(session, log_key=ctx.log.signer.vkey) if ctx.log is not None else None
    linked = [
        (get_account(session, other), ledger.subject_key_for(session, other, create=False))
        for other in (linked_ids(session, account_id=account_id) if scope == "linked" else [])
    ]
    total = _counts(session, account_id, subject_key) + sum(
        _counts(session, other.id, key) - 2 for other, key in linked
    )
    done = 0

    def tick(stage: str, records: int) -> None:
        nonlocal done
        done = min(done + records, total)
        if progress is not None:
            progress(stage.split(".")[0], done, total)

    if progress is not None:
        progress("counting", 0, total)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        writer = _Writer(archive, tick=tick, generated_at=generated_at)
        _sections(
            writer,
            session,
            account=account,
            subject_key=subject_key,
            ctx=ctx,
            generated_at=generated_at,
            cited=cited,
        )
        for other, key in linked:
            _sections(
                writer,
                session,
                account=other,
                subject_key=key,
                ctx=ctx,
                generated_at=generated_at,
                cited=cited,
                prefix=f"linked/{other.id}/",
            )
        operator = f"{ctx.operator_name} ({ctx.operator_url})"
        readme = README.format(
            schema=SCHEMA,
            version=SCHEMA_VERSION,
            generated_at=_iso(generated_at),
            account_id=account_id,
            operator=operator,
        )
        if linked:
            readme += LINKED_README.format(ids=", ".join(str(other.id) for other, _ in linked))
        writer.raw("README.txt", readme.encode())
        manifest = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "generated_at": generated_at,
            "generator": f"consentry {__version__}",
            "account_id": account_id,
            "scope": scope,
            "linked_accounts": [other.id for other, _ in linked],
            "operator": {"name": ctx.operator_name, "url": ctx.operator_url},
            "ledger_head": {"seq": head[0], "hash": head[1]} if head else None,
            "checkpoint": cited,
            "files": [asdict(f) for f in writer.files],
        }
        writer.document("manifest.json", manifest)
    return writer.files
