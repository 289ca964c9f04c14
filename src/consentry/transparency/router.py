"""HTTP routes of the transparency log: the checkpoint, tiles and entry bundles (C2SP tlog-tiles under
``/tlog``), consistency proofs, and a receipt's inclusion proof. They translate, nothing more."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response

from consentry.api_deps import DatabaseDep
from consentry.consent import service as consent
from consentry.consent.deps import AccountDep
from consentry.errors import Conflict, NotFound
from consentry.ids import Id64
from consentry.openapi import raises
from consentry.transparency import service
from consentry.transparency.note import b64
from consentry.transparency.service import LogContext
from consentry.transparency.tiles import ENTRIES

router = APIRouter()
TEXT = "text/plain; charset=utf-8"
MUTABLE = {"Cache-Control": "no-cache, max-age=2"}
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}


def log_context(request: Request) -> LogContext:
    """The application's transparency log."""
    ctx: LogContext = request.app.state.tlog
    return ctx


def _checkpoint_text(database: Any) -> str:
    with database.read() as session:
        row = service.latest_checkpoint(session)
        if row is None:
            raise Conflict("no checkpoint has been signed yet; the first follows the service's start")
        return service.signed_text(row)


@router.get(
    "/.well-known/consentry/checkpoint",
    tags=["transparency"],
    response_class=PlainTextResponse,
    responses={200: {"content": {TEXT: {}}}},
)
@raises(Conflict)  # no checkpoint signed yet
def checkpoint(database: DatabaseDep) -> Response:
    """The latest signed checkpoint (C2SP tlog-checkpoint) with the witnesses' cosignatures."""
    return PlainTextResponse(_checkpoint_text(database), media_type=TEXT, headers=MUTABLE)


@router.get("/tlog/checkpoint", tags=["transparency"], response_class=PlainTextResponse)
@raises(Conflict)  # no checkpoint signed yet
def tlog_checkpoint(database: DatabaseDep) -> Response:
    """The latest checkpoint at the tlog-tiles prefix ``/tlog`` (same as the well-known one)."""
    return PlainTextResponse(_checkpoint_text(database), media_type=TEXT, headers=MUTABLE)


@router.get("/.well-known/consentry/checkpoint-key", tags=["transparency"], response_class=PlainTextResponse)
def checkpoint_key(request: Request) -> Response:
    """The log's signed-note verifier key (``origin+keyid+base64``), separate from the receipt key."""
    return PlainTextResponse(log_context(request).signer.vkey + "\n", media_type=TEXT)


@router.get(
    "/tlog/tile/{path:path}",
    tags=["transparency"],
    responses={200: {"content": {"application/octet-stream": {}}}, 404: {"description": "no such tile"}},
)
def tile(path: str, database: DatabaseDep) -> Response:
    """A tile (``tile/<L>/<N>[.p/<W>]``) or entry bundle (``tile/entries/<N>[.p/<W>]``); full ones are
    immutable and cacheable for ever."""
    with database.read() as session:
        found, data = service.tile_bytes(session, path=f"tile/{path}")
    headers = IMMUTABLE if found.full else MUTABLE
    if found.level == ENTRIES:
        headers = {**headers, "Vary": "Accept-Encoding"}
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get(
    "/tlog/partitions/{partition}/tile/{path:path}",
    tags=["transparency"],
    responses={200: {"content": {"application/octet-stream": {}}}},
)
@raises(NotFound)  # a ledger of one partition, no such partition, or no such tile
def partition_tile(
    partition: Annotated[int, Path(ge=0, le=1023)], path: str, database: DatabaseDep
) -> Response:
    """A tile or entry bundle of one partition's tree (a ledger of several partitions), by the
    tlog-tiles paths under the prefix ``/tlog/partitions/<p>``: entry ``i`` is the event
    ``seq = i * P + p + 1``. Monitors recompute each partition's tree from these (``--full``)."""
    with database.read() as session:
        found, data = service.partition_tile_bytes(session, partition=partition, path=f"tile/{path}")
    headers = IMMUTABLE if found.full else MUTABLE
    if found.level == ENTRIES:
        headers = {**headers, "Vary": "Accept-Encoding"}
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get("/v1/transparency/consistency", tags=["transparency"])
def consistency(
    database: DatabaseDep,
    old: Annotated[Id64, Query(alias="from", ge=0)],
    new: Annotated[Id64, Query(alias="to", ge=0)],
) -> dict[str, Any]:
    """An RFC 9162 consistency proof between two tree sizes (base64 hashes), with both roots."""
    with database.read() as session:
        proof = service.consistency_proof(session, old=old, new=new)
        return {
            "from": old,
            "to": new,
            "from_root": b64(service.root(session, size=old)),
            "to_root": b64(service.root(session, size=new)),
            "proof": [b64(h) for h in proof],
        }


@router.get("/v1/transparency/partitions/{partition}/consistency", tags=["transparency"])
@raises(NotFound)  # a ledger of one partition, or no such partition
def partition_consistency(
    partition: Annotated[int, Path(ge=0, le=1023)],
    database: DatabaseDep,
    old: Annotated[Id64, Query(alias="from", ge=0)],
    new: Annotated[Id64, Query(alias="to", ge=0)],
) -> dict[str, Any]:
    """An RFC 9162 consistency proof between two sizes of one partition's tree (a ledger of several
    partitions; monitors check that every partition only grows between two state entries)."""
    with database.read() as session:
        proof = service.partition_consistency_proof(session, partition=partition, old=old, new=new)
    return {"partition": partition, "from": old, "to": new, "proof": [b64(h) for h in proof]}


@router.get("/v1/transparency/checkpoints/{size}", tags=["transparency"])
def checkpoint_of_size(size: Id64, database: DatabaseDep) -> dict[str, Any]:
    """A checkpoint signed earlier, by tree size (every checkpoint is kept)."""
    with database.read() as session:
        return service.checkpoint_json(service.get_checkpoint(session, size))


@router.get(
    "/v1/me/receipts/{seq}/proof",
    tags=["settings"],
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},  # format=tlog-proof
)
@raises(Conflict)  # not in a checkpoint yet: ask again after the interval
def receipt_proof(
    request: Request,
    seq: Id64,
    principal: AccountDep,
    database: DatabaseDep,
    format: Annotated[str, Query(pattern="^(json|tlog-proof)$")] = "json",
) -> Any:
    """The inclusion proof of one of the caller's events in the latest checkpoint (C2SP tlog-proof,
    or JSON with the same fields). 409 until a checkpoint covers the event (within the interval)."""
    assert principal.account_id is not None
    ctx = request.app.state.consent
    with database.read() as session:
        consent.receipt_for(session, account_id=principal.account_id, seq=seq, ctx=ctx)  # theirs, or 404
        found = service.event_proof(session, seq=seq)
        if found is None:
            seconds = log_context(request).interval.total_seconds()
            raise Conflict(
                f"event {seq} is not in a checkpoint yet; one follows within {seconds:g} s, ask again then",
                field="seq",
            )
        text = found.tlog_proof
        if format == "tlog-proof":
            return PlainTextResponse(text, media_type=TEXT)
        body: dict[str, Any] = {
            "seq": seq,
            "index": found.index,
            "size": found.checkpoint.size,
            "root": b64(bytes.fromhex(found.checkpoint.root)),
            "proof": [b64(h) for h in found.proof],
            "checkpoint": service.signed_text(found.checkpoint),
            "tlog_proof": text,
        }
        if found.partition is not None:  # a partitioned ledger: the event's step in its partition first
            step = found.partition
            size, root = step.states.trees[step.partition]
            body["partition"] = {
                "partition": step.partition,
                "index": step.index,
                "size": size,
                "root": b64(root),
                "proof": [b64(h) for h in step.proof],
                "state": step.states.text,
            }
    return body
