"""A monitor: anyone's check, over HTTP only, that the log never rewrites its past.

It remembers the last checkpoint it accepted (a small JSON state file), fetches the newest, verifies the
log's signature (and a witness quorum if asked), and proves the new tree extends the remembered one
with a consistency proof. ``full`` also recomputes the whole tree from the entry bundles and compares
the root; a saved receipt can be checked for inclusion in the current tree from the tiles. The state
moves forward only when every check passed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from consentry.consent.ledger import canonical_json
from consentry.consent.receipts import verify_receipt
from consentry.errors import IntegrityFailure, InvalidInput
from consentry.transparency import merkle, tiles
from consentry.transparency.note import b64, parse_vkey, unb64
from consentry.transparency.partitions import States, parse_states
from consentry.transparency.tiles import ENTRIES, Tile
from consentry.transparency.verify import Trust, VerifiedCheckpoint, partition_count, verify_checkpoint


class MonitorAlarm(IntegrityFailure):
    """The log misbehaved: ``kind`` is ``fork``, ``rollback`` (truncation), ``bad-signature``,
    ``tree-mismatch`` or ``receipt``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass
class MonitorReport:
    """What a run established."""

    origin: str
    size: int
    root: str
    previous_size: int | None
    cosigned_by: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


class LogClient:
    """Reads a Consentry log over HTTP."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, client: httpx.Client | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.http = client or httpx.Client(timeout=timeout)

    def text(self, path: str) -> str:
        """GET a text resource."""
        return self._get(path).text

    def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self.http.get(self.base + path, params=params)
        except httpx.HTTPError as error:
            raise InvalidInput(f"cannot reach {self.base}{path}: {error}", field="url") from error
        if response.status_code != 200:
            raise IntegrityFailure(f"GET {path} answered {response.status_code}: {response.text[:200]}")
        return response

    def current(self) -> str:
        """The log's latest signed checkpoint."""
        return self.text("/.well-known/consentry/checkpoint")

    def consistency(self, old: int, new: int) -> list[bytes]:
        """The log's consistency proof between two sizes."""
        data = self._get("/v1/transparency/consistency", {"from": old, "to": new}).json()
        return [unb64(h, what="proof") for h in data["proof"]]

    def partition_consistency(self, partition: int, old: int, new: int) -> list[bytes]:
        """The consistency proof between two sizes of one partition's tree."""
        path = f"/v1/transparency/partitions/{partition}/consistency"
        data = self._get(path, {"from": old, "to": new}).json()
        return [unb64(h, what="proof") for h in data["proof"]]

    def tiles(self, wanted: Sequence[Tile]) -> list[bytes]:
        """The bytes of tiles (or entry bundles)."""
        return [self._get("/tlog/" + tile.path).content for tile in wanted]


def load_state(path: Path | None) -> dict[str, Any] | None:
    """The last accepted checkpoint, if the state file exists."""
    if path is None or not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return data
    except (OSError, ValueError) as error:
        raise InvalidInput(f"cannot read the state file {path}: {error}", field="state") from error


def save_state(path: Path, checked: VerifiedCheckpoint, vkey: str) -> None:
    """Remember an accepted checkpoint (written atomically)."""
    data = {
        "origin": checked.checkpoint.origin,
        "size": checked.checkpoint.size,
        "root": b64(checked.checkpoint.root),
        "checkpoint": checked.text,
        "log_key": vkey,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    tmp.replace(path)


def full_root(client: LogClient, size: int) -> bytes:
    """The root recomputed from every entry bundle (only the growing tiles are kept in memory)."""
    frontier: dict[int, bytes] = {}
    done = 0
    for index in range(tiles.tiles_of(size, ENTRIES)):
        width = tiles.tile_width(ENTRIES, index, size)
        [bundle] = client.tiles([Tile(ENTRIES, index, width)])
        entries = tiles.split_bundle(bundle)
        if len(entries) != width:
            raise MonitorAlarm(
                "tree-mismatch", f"entry bundle {index} holds {len(entries)} entries, not {width}"
            )
        leaves = b"".join(merkle.leaf_hash(e) for e in entries)
        update = tiles.append_hashes(done, leaves, frontier)
        done = update.size
        frontier = _frontier_after(done, update.tiles, frontier)
    partial = {(t.level, t.index): frontier[t.level] for t in tiles.frontier_tiles(size)}
    return merkle.tree_hash(
        size, tiles.tile_hash_reader(size, lambda wanted: [partial[(t.level, t.index)] for t in wanted])
    )


def _frontier_after(
    size: int, changed: dict[tuple[int, int], bytes], old: dict[int, bytes]
) -> dict[int, bytes]:
    out = {}
    for tile in tiles.frontier_tiles(size):
        data = changed.get((tile.level, tile.index), old.get(tile.level))
        if data is None:
            raise MonitorAlarm("tree-mismatch", f"lost track of tile {tile.path}")
        out[tile.level] = data
    return out


def state_entries(client: LogClient, checked: VerifiedCheckpoint, first: int) -> list[States]:
    """The partition state entries ``[first, size)`` of a partitioned log, each proven to be the leaf
    of the checkpoint's tree at its index."""
    size, root = checked.checkpoint.size, checked.checkpoint.root
    cache: dict[tuple[int, int, int], bytes] = {}

    def read(wanted: Sequence[Tile]) -> list[bytes]:
        missing = [t for t in wanted if (t.level, t.index, t.width) not in cache]
        for tile, data in zip(missing, client.tiles(missing), strict=True):
            cache[(tile.level, tile.index, tile.width)] = data
        return [cache[(t.level, t.index, t.width)] for t in wanted]

    reader = tiles.tile_hash_reader(size, read)
    out: list[States] = []
    for index in range(first // tiles.TILE_WIDTH, tiles.tiles_of(size, ENTRIES)):
        width = tiles.tile_width(ENTRIES, index, size)
        [bundle] = client.tiles([Tile(ENTRIES, index, width)])
        for offset, entry in enumerate(tiles.split_bundle(bundle)):
            at = index * tiles.TILE_WIDTH + offset
            if at < first:
                continue
            try:
                merkle.verify_inclusion(
                    merkle.inclusion_proof(size, at, reader), size, root, at, merkle.leaf_hash(entry)
                )
                out.append(parse_states(entry))
            except (IntegrityFailure, InvalidInput) as error:
                raise MonitorAlarm(
                    "tree-mismatch", f"state entry {at} is not the signed tree's: {error}"
                ) from error
    return out


def check_partitions(client: LogClient, checked: VerifiedCheckpoint, previous_size: int) -> int:
    """Every partition only grew from one state entry to the next, from the last one accepted before to
    the newest (consistency proofs of the partitions' trees); returns how many steps were proven."""
    states = state_entries(client, checked, max(previous_size - 1, 0))
    proven = 0
    for before, after in itertools.pairwise(states):
        if len(before.trees) != len(after.trees):
            raise MonitorAlarm("fork", "the number of partitions changed between two state entries")
        for partition, ((old, old_root), (new, new_root)) in enumerate(
            zip(before.trees, after.trees, strict=True)
        ):
            if new < old:
                raise MonitorAlarm("rollback", f"partition {partition} shrank from {old} to {new} events")
            try:
                proof = client.partition_consistency(partition, old, new) if new > old else []
                merkle.verify_consistency(proof, old, old_root, new, new_root)
            except IntegrityFailure as error:
                raise MonitorAlarm(
                    "fork",
                    f"partition {partition}'s tree of size {new} does not extend its tree of size {old}: "
                    f"its history was rewritten ({error.detail})",
                ) from error
            proven += 1
    return proven


def check_receipt(
    client: LogClient, checked: VerifiedCheckpoint, signed: Any, receipt_key: dict[str, Any]
) -> None:
    """The receipt's signature and chain link, and its event's inclusion in the checkpoint's tree."""
    receipt = verify_receipt(signed, receipt_key)
    if partition_count(checked.checkpoint) > 1:
        raise InvalidInput(
            "the log is partitioned: check a receipt with its proof (consentry receipt verify --proof)",
            field="receipt",
        )
    seq = receipt["event"]["seq"]
    size = checked.checkpoint.size
    if not isinstance(seq, int) or not 1 <= seq <= size:
        raise MonitorAlarm("receipt", f"the receipt's event {seq} is not in the tree of size {size}")
    proof = merkle.inclusion_proof(size, seq - 1, tiles.tile_hash_reader(size, client.tiles))
    try:
        merkle.verify_inclusion(
            proof, size, checked.checkpoint.root, seq - 1, merkle.leaf_hash(canonical_json(receipt["event"]))
        )
    except IntegrityFailure as error:
        raise MonitorAlarm(
            "receipt", f"event {seq} of the receipt is not in the log's tree of size {size}: it was rewritten"
        ) from error


def run(
    client: LogClient,
    *,
    trust: Trust | None,
    state: Path | None,
    full: bool = False,
    receipt: Any = None,
    receipt_key: dict[str, Any] | None = None,
) -> MonitorReport:
    """One monitoring round; raises ``MonitorAlarm`` naming what is wrong."""
    previous = load_state(state)
    if trust is None:
        vkey = str(previous["log_key"]) if previous else client.text("/.well-known/consentry/checkpoint-key")
        trust = Trust(parse_vkey(vkey))
    notes: list[str] = []
    signed = client.text("/.well-known/consentry/checkpoint")
    try:
        checked = verify_checkpoint(signed, trust)
    except IntegrityFailure as error:
        raise MonitorAlarm("bad-signature", error.detail) from error
    new = checked.checkpoint
    previous_size = None
    if previous is not None:
        if previous["origin"] != new.origin:
            raise MonitorAlarm(
                "bad-signature", f"the log's origin changed from {previous['origin']} to {new.origin}"
            )
        previous_size = int(previous["size"])
        old_root = unb64(str(previous["root"]), what="state")
        if new.size < previous_size:
            raise MonitorAlarm(
                "rollback",
                f"the log was truncated: it now has {new.size} entries, but a checkpoint of size "
                f"{previous_size} was accepted before",
            )
        if new.size == previous_size and new.root != old_root:
            raise MonitorAlarm("fork", f"two different roots signed for size {new.size}")
        try:
            proof = client.consistency(previous_size, new.size) if new.size > previous_size else []
            merkle.verify_consistency(proof, previous_size, old_root, new.size, new.root)
        except IntegrityFailure as error:
            raise MonitorAlarm(
                "fork",
                f"the tree of size {new.size} does not extend the checkpoint of size {previous_size} "
                f"accepted before ({error.detail}): the log's history was rewritten",
            ) from error
        notes.append(f"consistent with the checkpoint of size {previous_size} accepted before")
        if partition_count(new) > 1 and new.size > previous_size:
            steps = check_partitions(client, checked, previous_size)
            notes.append(f"every partition's tree extends its earlier one ({steps} steps proven)")
    if full:
        recomputed = full_root(client, new.size)
        if recomputed != new.root:
            raise MonitorAlarm(
                "tree-mismatch", f"the entries do not hash to the checkpoint's root at size {new.size}"
            )
        notes.append(f"recomputed the tree from all {new.size} entries")
    if receipt is not None:
        if receipt_key is None:
            keys = json.loads(client.text("/.well-known/consentry/receipt-key"))["keys"]
            receipt_key = keys[0]
        assert receipt_key is not None
        check_receipt(client, checked, receipt, receipt_key)
        notes.append("the receipt's event is included in the current tree")
    if state is not None:
        save_state(state, checked, trust.log.vkey)
    return MonitorReport(new.origin, new.size, b64(new.root), previous_size, checked.cosigned_by, notes)
