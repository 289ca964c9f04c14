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

This module is the domain's public face: jobs are ``consentry.exports.jobs``, writing
``consentry.exports.writer`` (with ``sections`` and ``archive``).

Nothing of any other account is exported beyond the id and handle of accounts it follows, is followed by
or blocks.
"""

from __future__ import annotations

from consentry.exports.archive import ExportSummary, FileEntry, dumps
from consentry.exports.jobs import (
    ACTIVE,
    EXPIRES_AFTER,
    JOB_KIND,
    SCOPES,
    STALE_AFTER,
    abandon_job,
    check_own,
    download_path,
    exports_folder,
    get_job,
    latest_job,
    list_jobs,
    new_job_id,
    purge_expired,
    request_export,
    run_job,
)
from consentry.exports.writer import (
    LINKED_README,
    README,
    SCHEMA,
    SCHEMA_VERSION,
    Progress,
    write_export,
)

__all__ = [
    "ACTIVE",
    "EXPIRES_AFTER",
    "JOB_KIND",
    "LINKED_README",
    "README",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SCOPES",
    "STALE_AFTER",
    "ExportSummary",
    "FileEntry",
    "Progress",
    "abandon_job",
    "check_own",
    "download_path",
    "dumps",
    "exports_folder",
    "get_job",
    "latest_job",
    "list_jobs",
    "new_job_id",
    "purge_expired",
    "request_export",
    "run_job",
    "write_export",
]
