"""Reading and verifying published releases: the manifest, every file's checksum and row count, the
ledger history the manifest cites, and which releases delivered a record."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.datasets import lineage, writer
from consentry.datasets.models import Release
from consentry.datasets.queries import get_release
from consentry.errors import ConsentryError, IntegrityFailure
from consentry.transparency import cite
from consentry.transparency.cite import LocalLog, LogView
from consentry.transparency.verify import Trust


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
