"""What a partner reads with its key: its own published releases and their files (lineage never), its
revocation feed, and its acknowledgements of deletion. Anything of another partner is "not found".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.datasets.models import Release
from consentry.db import utcnow
from consentry.errors import (
    IntegrityFailure,
    InvalidInput,
    NotFound,
)
from consentry.partners.models import Revocation
from consentry.partners.schemas import (
    AckOut,
    ReleaseFile,
    RevocationOut,
    RevocationPage,
)
from consentry.transparency.cite import latest_citation
from consentry.transparency.schemas import CheckpointCitation

MANIFEST = "manifest.json"
PRIVATE_FOLDERS = ("lineage/",)
"""Files of a release never served to its partner: lineage names real account ids."""

MEDIA_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
}

CURSOR = re.compile(r"^[0-9]{1,18}$")


def partner_releases(session: Session, *, recipient_id: int, limit: int = 100) -> list[Release]:
    """The partner's published releases, newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    return list(
        session.scalars(
            select(Release)
            .where(Release.recipient_id == recipient_id, Release.status == "published")
            .order_by(Release.created_at.desc(), Release.id.desc())
            .limit(limit)
        )
    )


def partner_release(session: Session, *, recipient_id: int, release_id: str) -> Release:
    """One of the partner's published releases; ``NotFound`` for anything else (another partner's
    release is indistinguishable from a missing one)."""
    release = session.get(Release, release_id)
    if release is None or release.recipient_id != recipient_id or release.status != "published":
        raise NotFound(f"no release {release_id!r}", field="release_id")
    return release


def load_manifest(release: Release) -> tuple[dict[str, Any], bytes]:
    """The manifest of a release and its bytes, checked against the SHA-256 recorded at publication."""
    path = Path(release.path) / MANIFEST
    try:
        data = path.read_bytes()
    except OSError as error:
        raise IntegrityFailure(f"cannot read the manifest of {release.id}: {error}", field="path") from error
    if hashlib.sha256(data).hexdigest() != release.manifest_sha256:
        raise IntegrityFailure(f"the manifest of {release.id} differs from the one published", field="path")
    manifest: dict[str, Any] = json.loads(data)
    return manifest, data


def _servable(path: str) -> bool:
    return not path.startswith(PRIVATE_FOLDERS)


def release_files(release: Release, manifest: dict[str, Any], manifest_bytes: bytes) -> list[ReleaseFile]:
    """The files of a release its partner may download: ``manifest.json`` and every file the manifest
    lists, except lineage (which names real account ids)."""
    files = [ReleaseFile(path=MANIFEST, size=len(manifest_bytes), sha256=release.manifest_sha256)]
    for entry in manifest.get("files", []):
        path = str(entry["path"])
        if _servable(path):
            files.append(
                ReleaseFile(
                    path=path, size=int(entry["bytes"]), sha256=str(entry["sha256"]), rows=entry.get("rows")
                )
            )
    return files


def release_summary(release: Release, manifest: dict[str, Any], manifest_bytes: bytes) -> dict[str, Any]:
    """The fields of ``PartnerRelease`` for one release."""
    files = release_files(release, manifest, manifest_bytes)
    return {
        "id": release.id,
        "purpose": release.purpose,
        "categories": list(release.categories),
        "as_of": release.as_of,
        "since": release.since,
        "until": release.until,
        "since_release": release.since_release,
        "created_at": release.created_at,
        "rows": {str(k): int(v) for k, v in manifest.get("rows", {}).items()},
        "removals": release.removals,
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "manifest_sha256": release.manifest_sha256,
    }


@dataclass(frozen=True)
class ServedFile:
    """A release file ready to be sent: where it is, how big, its SHA-256 (from the manifest)."""

    path: Path
    name: str
    size: int
    sha256: str
    media_type: str


def release_file(
    release: Release, manifest: dict[str, Any], manifest_bytes: bytes, *, path: str
) -> ServedFile:
    """The file ``path`` of a release, if the partner may download it; ``NotFound`` otherwise.

    Only exact paths the manifest lists are served, so nothing outside the release folder (or inside it
    but unlisted, or lineage) can be named; the resolved file must also stay inside the folder."""
    listed = {f.path: f for f in release_files(release, manifest, manifest_bytes)}
    entry = listed.get(path)
    if entry is None:
        raise NotFound(f"release {release.id} has no file {path!r}", field="path")
    folder = Path(release.path).resolve()
    target = (folder / entry.path).resolve()
    if not target.is_relative_to(folder) or not target.is_file():
        raise NotFound(f"release {release.id} has no file {path!r}", field="path")
    size = target.stat().st_size
    if size != entry.size:
        raise IntegrityFailure(
            f"{path} of {release.id} has {size} bytes, its manifest says {entry.size}", field="path"
        )
    return ServedFile(
        path=target,
        name=target.name,
        size=size,
        sha256=entry.sha256,
        media_type=MEDIA_TYPES.get(target.suffix, "application/octet-stream"),
    )


def revocation_out(revocation: Revocation) -> RevocationOut:
    """A revocation as its partner sees it (no account id, no setting)."""
    return RevocationOut(
        id=revocation.id,
        release=revocation.release_id,
        category=revocation.category,
        reason=revocation.reason,
        record_ids=[int(i) for i in revocation.record_ids],
        records=revocation.records,
        created_at=revocation.created_at,
        deadline_at=revocation.deadline_at,
        acknowledged=revocation.acknowledged_at is not None,
        acknowledged_at=revocation.acknowledged_at,
        deleted_at=revocation.deleted_at,
        method=revocation.ack_method,
        note=revocation.ack_note,
    )


def parse_cursor(after: str | None) -> int:
    """The revocation id a feed cursor stands for (0 for the start); ``InvalidInput`` naming ``after``."""
    if after is None or after == "":
        return 0
    if not CURSOR.match(after):
        raise InvalidInput(f"{after!r} is not a cursor of this feed; pass a next_cursor back", field="after")
    return int(after)


def revocation_feed(
    session: Session,
    *,
    recipient_id: int,
    after: str | None = None,
    limit: int = 100,
    acknowledged: bool | None = None,
    log_key: str | None = None,
) -> RevocationPage:
    """The partner's revocations with ids after the cursor, in id order.

    ``next_cursor`` continues the feed; at its end it repeats the cursor, so polling with it returns
    only what is new. ``acknowledged`` narrows the feed to acknowledged (true) or open (false) ones.
    Given the log's verifier key, the page cites the ledger's latest checkpoint."""
    start = parse_cursor(after)
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    query = select(Revocation).where(Revocation.recipient_id == recipient_id, Revocation.id > start)
    if acknowledged is not None:
        query = query.where(
            Revocation.acknowledged_at.is_not(None) if acknowledged else Revocation.acknowledged_at.is_(None)
        )
    rows = list(session.scalars(query.order_by(Revocation.id).limit(limit + 1)))
    has_more = len(rows) > limit
    items = [revocation_out(r) for r in rows[:limit]]
    last = items[-1].id if items else start
    cited = latest_citation(session, log_key=log_key) if log_key is not None else None
    return RevocationPage(
        items=items,
        next_cursor=str(last),
        has_more=has_more,
        checkpoint=CheckpointCitation.model_validate(cited) if cited is not None else None,
    )


def acknowledge(
    session: Session,
    *,
    recipient_id: int,
    revocation_id: int,
    deleted_at: datetime,
    method: str,
    note: str | None = None,
    now: datetime | None = None,
) -> AckOut:
    """Record the partner's attestation that it deleted a revocation's records.

    ``deleted_at`` must carry a time zone and not be in the future (it may precede the revocation: a
    partner may have deleted the records before it was told to). A revocation already acknowledged keeps
    its first attestation: it is returned with ``repeated`` and nothing changes."""
    now = now or utcnow()
    if deleted_at.tzinfo is None:
        raise InvalidInput("deleted_at must carry a time zone", field="deleted_at")
    if deleted_at > now:
        raise InvalidInput("deleted_at must not be in the future", field="deleted_at")
    method = method.strip()
    if not 1 <= len(method) <= 100:
        raise InvalidInput("method must be 1-100 characters", field="method")
    if note is not None and len(note) > 2000:
        raise InvalidInput("note must be at most 2000 characters", field="note")
    revocation = session.scalar(
        select(Revocation)
        .where(Revocation.id == revocation_id, Revocation.recipient_id == recipient_id)
        .with_for_update()
    )
    if revocation is None:
        raise NotFound(f"no revocation {revocation_id}", field="revocation_id")
    if revocation.acknowledged_at is None:
        revocation.acknowledged_at = now
        revocation.deleted_at = deleted_at
        revocation.ack_method = method
        revocation.ack_note = note
        session.flush()
        repeated = False
    else:
        repeated = True
    assert revocation.acknowledged_at is not None and revocation.deleted_at is not None
    return AckOut(
        id=revocation.id,
        acknowledged_at=revocation.acknowledged_at,
        deleted_at=revocation.deleted_at,
        method=revocation.ack_method or "",
        note=revocation.ack_note,
        repeated=repeated,
    )
