"""Writing an export: the whole ZIP of one account (and its linked accounts) from one read snapshot, its
README and manifest, written to a temporary file, fsynced and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from consentry import __version__
from consentry.consent import ledger
from consentry.consent.service import ConsentContext
from consentry.db import Database, utcnow
from consentry.exports.archive import ExportSummary, FileEntry, ZipWriter, iso
from consentry.exports.sections import count_records, write_sections
from consentry.social.service import get_account
from consentry.transparency.cite import latest_citation

SCHEMA = "consentry.account-export"
SCHEMA_VERSION = 1

Progress = Callable[[str, int, int], None]
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
    top = max(ledger.heads(session), key=lambda h: h.seq)
    cited = latest_citation(session, log_key=ctx.log.signer.vkey) if ctx.log is not None else None
    linked = [
        (get_account(session, other), ledger.subject_key_for(session, other, create=False))
        for other in (linked_ids(session, account_id=account_id) if scope == "linked" else [])
    ]
    total = count_records(session, account_id, subject_key) + sum(
        count_records(session, other.id, key) - 2 for other, key in linked
    )
    tick = _ticker(progress, total)
    if progress is not None:
        progress("counting", 0, total)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        writer = ZipWriter(archive, tick=tick, generated_at=generated_at)
        for prefix, (owner, key) in [("", (account, subject_key))] + [
            (f"linked/{other.id}/", (other, other_key)) for other, other_key in linked
        ]:
            write_sections(
                writer,
                session,
                account=owner,
                subject_key=key,
                ctx=ctx,
                generated_at=generated_at,
                cited=cited,
                prefix=prefix,
            )
        others = [other.id for other, _ in linked]
        writer.raw("README.txt", _readme(account_id, ctx=ctx, generated_at=generated_at, linked=others))
        manifest = _manifest(
            account_id, ctx=ctx, generated_at=generated_at, scope=scope, linked=others, cited=cited, head=top
        )
        writer.document("manifest.json", manifest | {"files": [asdict(f) for f in writer.files]})
    return writer.files


def _ticker(progress: Progress | None, total: int) -> Callable[[str, int], None]:
    """Counts records written and reports them (by file stem) to ``progress``."""
    done = 0

    def tick(stage: str, records: int) -> None:
        nonlocal done
        done = min(done + records, total)
        if progress is not None:
            progress(stage.split(".")[0], done, total)

    return tick


def _readme(account_id: int, *, ctx: ConsentContext, generated_at: datetime, linked: list[int]) -> bytes:
    readme = README.format(
        schema=SCHEMA,
        version=SCHEMA_VERSION,
        generated_at=iso(generated_at),
        account_id=account_id,
        operator=f"{ctx.operator_name} ({ctx.operator_url})",
    )
    if linked:
        readme += LINKED_README.format(ids=", ".join(str(other) for other in linked))
    return readme.encode()


def _manifest(
    account_id: int,
    *,
    ctx: ConsentContext,
    generated_at: datetime,
    scope: str,
    linked: list[int],
    cited: Any,
    head: ledger.Head,
) -> dict[str, Any]:
    """The manifest but its list of files (``head``: the ledger head the export was read at)."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at,
        "generator": f"consentry {__version__}",
        "account_id": account_id,
        "scope": scope,
        "linked_accounts": linked,
        "operator": {"name": ctx.operator_name, "url": ctx.operator_url},
        "ledger_head": {"seq": head.seq, "hash": head.hash},
        "checkpoint": cited,
    }
