"""HTTP routes of the partners domain.

``/v1/admin/partners/...`` (admin token): the registry, API keys and the overdue report.
``/v1/partner/...`` (partner API key): the partner's own releases and files (with HTTP range requests),
its revocation feed and acknowledgements. Another partner's release or revocation is 404, never 403.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from consentry.api_deps import AdminDep, DatabaseDep
from consentry.auth.credentials import header_token
from consentry.consent.deps import AccountDep
from consentry.db import Database, utcnow
from consentry.errors import Conflict, Forbidden, NotFound, RangeNotSatisfiable, Unauthenticated
from consentry.ids import Id64
from consentry.links.service import linked_ids
from consentry.openapi import raises
from consentry.partners import service
from consentry.partners.schemas import (
    AccountUsageOut,
    AckCreate,
    AckOut,
    DataUsageOut,
    IssuedKey,
    KeyCreate,
    KeyOut,
    OverdueReport,
    PartnerCreate,
    PartnerDetail,
    PartnerOut,
    PartnerRelease,
    PartnerReleaseDetail,
    PartnerUpdate,
    PartnerWritten,
    ReleaseFile,
    ReleaseUsageOut,
    RevocationPage,
)
from consentry.partners.service import PartnerPrincipal
from consentry.partners.usage import data_usage
from consentry.transparency.cite import latest_citation
from consentry.transparency.schemas import CheckpointCitation

router = APIRouter()
ADMIN_TAGS: list[str | Enum] = ["partners (admin)"]
PARTNER_TAGS: list[str | Enum] = ["partner API"]
CHUNK = 1024 * 1024
RANGE = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")
"""One ``range-spec`` (RFC 9110, 14.1.1): ``a-b``, ``a-`` or ``-n``, with any number of digits."""

# --- authentication -----------------------------------------------------------------------------------


@raises(Unauthenticated)
def partner_key(request: Request, database: DatabaseDep) -> PartnerPrincipal:
    """The partner behind ``Authorization: Bearer <API key>``; 401 if the key is missing, unknown or
    revoked. Records the key's use (at most once a minute)."""
    key = header_token(request.headers.getlist("authorization"))
    if key is None:
        raise Unauthenticated(
            "send 'Authorization: Bearer <partner API key>' (create one with 'consentry partner key create')",
            field="Authorization",
        )
    with database.read() as session:
        principal = service.authenticate(session, key=key)
    now = utcnow()
    if service.needs_touch(principal, now=now):
        with database.write() as session:
            service.touch_key(session, key_id=principal.key_id, now=now)
    return principal


@raises(Forbidden)
def active_partner(principal: Annotated[PartnerPrincipal, Depends(partner_key)]) -> PartnerPrincipal:
    """The partner behind the API key, who must not be suspended (403)."""
    return service.forbid_suspended(principal)


PartnerDep = Annotated[PartnerPrincipal, Depends(active_partner)]
"""An active partner (releases and files)."""
PartnerAnyDep = Annotated[PartnerPrincipal, Depends(partner_key)]
"""Any partner with a valid key, suspended ones too (revocations: the duty to delete does not pause)."""


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


# --- registry (admin) -----------------------------------------------------------------------------------


def _written(database: Database, name: str, generated: str | None) -> PartnerWritten:
    with database.read() as session:
        detail = service.partner_detail(session, service.get_partner(session, name))
    return PartnerWritten(**detail.model_dump(), webhook_secret=generated)


@router.get("/v1/admin/partners", tags=ADMIN_TAGS)
def list_partners(principal: AdminDep, database: DatabaseDep) -> list[PartnerOut]:
    """Every partner (recipient of releases), by name."""
    with database.read() as session:
        return [service.partner_out(p) for p in service.list_partners(session)]


@router.post("/v1/admin/partners", status_code=201, tags=ADMIN_TAGS)
@raises(Conflict)
def add_partner(body: PartnerCreate, principal: AdminDep, database: DatabaseDep) -> PartnerWritten:
    """Register a partner. A webhook secret Consentry generates is in this response only."""
    with database.write() as session:
        partner, generated = service.add_partner(
            session,
            name=body.name,
            kind=body.kind,
            purposes=body.purposes,
            categories=body.categories,
            deadline_hours=body.deadline_hours,
            webhook_url=body.webhook_url,
            webhook_secret=body.webhook_secret,
        )
        name = partner.name
    return _written(database, name, generated)


@router.get("/v1/admin/partners/overdue", tags=ADMIN_TAGS)
@raises(NotFound)
def overdue(principal: AdminDep, database: DatabaseDep, partner: str | None = None) -> OverdueReport:
    """Revocations past their deadline without acknowledgement, per partner and release."""
    with database.read() as session:
        return service.overdue_report(session, partner=partner)


@router.get("/v1/admin/partners/{name}", tags=ADMIN_TAGS)
def show_partner(name: str, principal: AdminDep, database: DatabaseDep) -> PartnerDetail:
    """A partner with its keys and its revocations by state."""
    with database.read() as session:
        return service.partner_detail(session, service.get_partner(session, name))


@router.patch("/v1/admin/partners/{name}", tags=ADMIN_TAGS)
def update_partner(
    name: str, body: PartnerUpdate, principal: AdminDep, database: DatabaseDep
) -> PartnerWritten:
    """Change the deletion deadline or the webhook (``"webhook_url": null`` removes it). A webhook secret
    Consentry generates is in this response only."""
    remove = "webhook_url" in body.model_fields_set and body.webhook_url is None
    with database.write() as session:
        _, generated = service.update_partner(
            session,
            name=name,
            deadline_hours=body.deadline_hours,
            webhook_url=body.webhook_url,
            webhook_secret=body.webhook_secret,
            rotate_secret=body.rotate_secret,
            remove_webhook=remove,
        )
    return _written(database, name, generated)


@router.post("/v1/admin/partners/{name}/suspend", tags=ADMIN_TAGS)
def suspend_partner(name: str, principal: AdminDep, database: DatabaseDep) -> PartnerOut:
    """Suspend a partner: its keys get 403 on releases and it gets no new release."""
    with database.write() as session:
        return service.partner_out(service.set_status(session, name=name, status="suspended"))


@router.post("/v1/admin/partners/{name}/resume", tags=ADMIN_TAGS)
def resume_partner(name: str, principal: AdminDep, database: DatabaseDep) -> PartnerOut:
    """Lift a suspension."""
    with database.write() as session:
        return service.partner_out(service.set_status(session, name=name, status="active"))


@router.get("/v1/admin/partners/{name}/keys", tags=ADMIN_TAGS)
def list_keys(name: str, principal: AdminDep, database: DatabaseDep) -> list[KeyOut]:
    """A partner's API keys, newest first (prefixes only)."""
    with database.read() as session:
        return [KeyOut.model_validate(k) for k in service.list_keys(session, partner=name)]


@router.post("/v1/admin/partners/{name}/keys", status_code=201, tags=ADMIN_TAGS)
def create_key(name: str, body: KeyCreate, principal: AdminDep, database: DatabaseDep) -> IssuedKey:
    """Issue an API key; the key is in this response only."""
    with database.write() as session:
        row, key = service.create_key(session, partner=name, label=body.label)
        return IssuedKey(**KeyOut.model_validate(row).model_dump(), key=key)


@router.post("/v1/admin/partners/{name}/keys/{key}/revoke", tags=ADMIN_TAGS)
@raises(Conflict)
def revoke_key(name: str, key: str, principal: AdminDep, database: DatabaseDep) -> KeyOut:
    """Revoke a key (by id or prefix); idempotent."""
    with database.write() as session:
        return KeyOut.model_validate(service.revoke_key(session, partner=name, key=key))


# --- the partner API: releases and files ------------------------------------------------------------------


@router.get("/v1/partner/releases", tags=PARTNER_TAGS)
def partner_releases(
    partner: PartnerDep, database: DatabaseDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[PartnerRelease]:
    """The partner's published releases, newest first, summarised from their manifests."""
    out = []
    with database.read() as session:
        for release in service.partner_releases(session, recipient_id=partner.recipient_id, limit=limit):
            manifest, data = service.load_manifest(release)
            out.append(PartnerRelease(**service.release_summary(release, manifest, data)))
    return out


@router.get("/v1/partner/releases/{release_id}", tags=PARTNER_TAGS)
def partner_release(release_id: str, partner: PartnerDep, database: DatabaseDep) -> PartnerReleaseDetail:
    """One of the partner's releases with its manifest."""
    with database.read() as session:
        release = service.partner_release(session, recipient_id=partner.recipient_id, release_id=release_id)
        manifest, data = service.load_manifest(release)
        return PartnerReleaseDetail(**service.release_summary(release, manifest, data), manifest=manifest)


@router.get("/v1/partner/releases/{release_id}/files", tags=PARTNER_TAGS)
def release_files(release_id: str, partner: PartnerDep, database: DatabaseDep) -> list[ReleaseFile]:
    """The files of a release the partner may download, with size and SHA-256 from the manifest."""
    with database.read() as session:
        release = service.partner_release(session, recipient_id=partner.recipient_id, release_id=release_id)
        manifest, data = service.load_manifest(release)
        return service.release_files(release, manifest, data)


class _Unsatisfiable(Exception):
    pass


def _position(digits: str) -> int:
    """A byte position of any length: its value, or ``BEYOND`` when it has more significant digits than
    any file size (so 20+ digit numbers compare and clamp like the huge numbers they are, without
    converting thousands of digits)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 18 else BEYOND


BEYOND = 10**18
"""Larger than any file served (about 1 EB); positions from 19 significant digits up count as this."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The single byte range ``(first, last)`` a ``Range`` header asks for, ``None`` to send the whole
    file (no header, another unit, several ranges, bad syntax, or a last position before the first:
    RFC 9110 lets a server ignore those), or ``_Unsatisfiable`` when it selects no byte. An end beyond
    the file is clamped to its last byte, a suffix longer than the file is the whole file, whatever the
    number of digits."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = RANGE.fullmatch(spec)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # a suffix: the last n bytes
        length = _position(last)
        if length == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - length), size - 1
    start = _position(first)
    if last != "" and _before(last, first):
        return None
    if start >= size:
        raise _Unsatisfiable
    return start, size - 1 if last == "" else min(_position(last), size - 1)


def _before(a: str, b: str) -> bool:
    """Whether the number written ``a`` is smaller than the number written ``b`` (any length)."""
    a, b = a.lstrip("0"), b.lstrip("0")
    return (len(a), a) < (len(b), b)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _chunks(path: FilePath, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


FILE_PATH = "/v1/partner/releases/{release_id}/files/{path:path}"
_FILE = {"schema": {"type": "string", "format": "binary"}}
_FILE_CONTENT = {
    media: _FILE for media in sorted({*service.MEDIA_TYPES.values(), "application/octet-stream"})
}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole file", "content": _FILE_CONTENT},
    206: {"description": "One byte range of the file (``Content-Range``)", "content": _FILE_CONTENT},
    304: {"description": "Not modified: ``If-None-Match`` names the file's ETag"},
}


def _plain_path(request: Request, path: str) -> bool:
    """Whether the file path was sent as plain segments: each raw segment decodes to exactly one of
    ``path`` (so no ``%2F`` made one segment of several), and none is empty, ``.``, ``..`` or holds a
    backslash or a control character. The router sees the path only after the server decoded it, so
    this reads the raw path; percent-encoded ordinary characters (``p%6Fsts``) are the same characters
    (RFC 3986, 2.3) and pass."""
    segments = path.split("/")
    if any(s in ("", ".", "..") or "\\" in s or any(ord(c) < 32 or c == "\x7f" for c in s) for s in segments):
        return False
    raw: bytes | None = request.scope.get("raw_path")
    if raw is None:  # a server that gives no raw path: the decoded one is all there is
        return True
    sent = raw.decode("latin-1").split("/")[-len(segments) :]
    return [unquote(s) for s in sent] == segments


@router.head(
    FILE_PATH,
    tags=PARTNER_TAGS,
    operation_id="partner_file_head",
    response_class=Response,
    responses=FILE_RESPONSES,
)
@router.get(
    FILE_PATH,
    tags=PARTNER_TAGS,
    operation_id="partner_file_download",
    response_class=Response,
    responses=FILE_RESPONSES,
)
@raises(416)
def download(
    release_id: str, path: str, request: Request, partner: PartnerDep, database: DatabaseDep
) -> Response:
    """Download a file of a release (only files its manifest lists, and ``manifest.json``).

    Single byte ranges are supported (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``: 206 with
    ``Content-Range``; 416 when unsatisfiable), with ``If-Range`` and ``If-None-Match`` on the ETag (the
    file's SHA-256). ``Repr-Digest`` and ``X-Checksum-SHA256`` give the whole file's SHA-256 from the
    manifest, so a resumed download can be checked end to end."""
    with database.read() as session:
        release = service.partner_release(session, recipient_id=partner.recipient_id, release_id=release_id)
        manifest, data = service.load_manifest(release)
        if not _plain_path(request, path):
            raise NotFound(f"release {release.id} has no file {path!r}", field="path")
        served = service.release_file(release, manifest, data, path=path)
    etag = f'"{served.sha256}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(served.sha256)).decode()}:",
        "X-Checksum-SHA256": served.sha256,
        "Content-Disposition": f'attachment; filename="{served.name}"',
        "Cache-Control": "private",
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and (etag in _etags(if_none_match) or "*" in _etags(if_none_match)):
        return Response(status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's copy is another version: send the whole file
    try:
        byte_range = parse_range(wanted, served.size) if wanted is not None else None
    except _Unsatisfiable as error:
        raise RangeNotSatisfiable(
            f"{path} has {served.size} bytes; the range {wanted!r} selects none of them",
            size=served.size,
            headers=headers,
        ) from error
    status, start, length = 200, 0, served.size
    if byte_range is not None:
        start, last = byte_range
        status, length = 206, last - start + 1
        headers["Content-Range"] = f"bytes {start}-{last}/{served.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=served.media_type)
    return StreamingResponse(
        _chunks(served.path, start, length), status_code=status, headers=headers, media_type=served.media_type
    )


# --- the partner API: revocations ---------------------------------------------------------------------------


@router.get("/v1/partner/revocations", tags=PARTNER_TAGS)
def revocation_feed(
    request: Request,
    partner: PartnerAnyDep,
    database: DatabaseDep,
    after: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    acknowledged: Annotated[
        bool | None, Query(description="only acknowledged (true) or open (false)")
    ] = None,
) -> RevocationPage:
    """The partner's revocations in id order after ``after``; poll with ``next_cursor``. Each page
    cites the consent ledger's latest checkpoint."""
    with database.read() as session:
        return service.revocation_feed(
            session,
            recipient_id=partner.recipient_id,
            after=after,
            limit=limit,
            acknowledged=acknowledged,
            log_key=request.app.state.tlog.signer.vkey,
        )


@router.post("/v1/partner/revocations/{revocation_id}/ack", tags=PARTNER_TAGS)
def acknowledge(
    revocation_id: Id64,
    body: AckCreate,
    partner: PartnerAnyDep,
    database: DatabaseDep,
) -> AckOut:
    """Attest that the revocation's records were deleted (``deleted_at`` not in the future). Repeating it
    returns the first attestation unchanged (``repeated: true``)."""
    with database.write() as session:
        return service.acknowledge(
            session,
            recipient_id=partner.recipient_id,
            revocation_id=revocation_id,
            deleted_at=_utc(body.deleted_at),
            method=body.method,
            note=body.note,
        )


# --- the account holder's data-usage report (account token) -------------------------------------------


def _usage(session: Session, account_id: int) -> AccountUsageOut:
    releases = [ReleaseUsageOut.model_validate(item) for item in data_usage(session, account_id=account_id)]
    total = sum(sum(item.records.values()) for item in releases)
    return AccountUsageOut(account_id=account_id, releases=releases, records=total)


@router.get("/v1/me/data-usage", tags=["settings"])
def my_data_usage(
    request: Request,
    principal: AccountDep,
    database: DatabaseDep,
    scope: Annotated[
        Literal["account", "linked"],
        Query(description="linked: add the same report for every account with a confirmed link"),
    ] = "account",
) -> DataUsageOut:
    """Every release that delivered the caller's records (from lineage), and the state of each revocation,
    citing the consent ledger's latest checkpoint."""
    assert principal.account_id is not None
    with database.read() as session:
        own = _usage(session, principal.account_id)
        linked = (
            [_usage(session, other) for other in linked_ids(session, account_id=principal.account_id)]
            if scope == "linked"
            else []
        )
        cited = latest_citation(session, log_key=request.app.state.tlog.signer.vkey)
    return DataUsageOut(
        **own.model_dump(),
        checkpoint=CheckpointCitation.model_validate(cited) if cited is not None else None,
        linked=linked,
    )
