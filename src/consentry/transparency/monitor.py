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
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from consentry.consent import ledger
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
    ``tree-mismatch``, ``missing`` (a tile or entry bundle the checkpoint covers is not served) or
    ``receipt``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)  # the detail alone: the command line prints "KIND: detail"
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


FETCH_WORKERS = 8
"""Entry bundles fetched at once by ``full_root`` (each on a keep-alive connection of its own)."""
FETCH_AHEAD = 64
"""Entry bundles fetched ahead of the hashing at most (bounds the memory held)."""

Progress = Callable[[str, int, int], None]
"""``(what, leaves hashed, leaves in all)``, called as a full check goes."""


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
    """Reads a Consentry log over HTTP (keep-alive connections, safe to share between threads).

    ``prefix`` is where the tlog-tiles live: ``/tlog`` for the signed tree, ``/tlog/partitions/<p>``
    for a partition's tree (``partition``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
        prefix: str = "/tlog",
        connections: int = FETCH_WORKERS,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.prefix = prefix
        self.http = client or httpx.Client(
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            transport=httpx.HTTPTransport(retries=2),  # a connection refused or reset is tried again
        )

    def partition(self, partition: int) -> LogClient:
        """The same log's partition ``partition`` (its own tree and entries), on the same connections."""
        return LogClient(self.base, client=self.http, prefix=f"/tlog/partitions/{partition}")

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
        return [self._get(f"{self.prefix}/{tile.path}").content for tile in wanted]

    def bundle(self, tile: Tile, *, size: int) -> bytes:
        """One entry bundle of the tree of ``size`` leaves; ``MonitorAlarm`` (``missing``) naming the
        tile and its leaves when the log does not serve it."""
        path = f"{self.prefix}/{tile.path}"
        try:
            response = self.http.get(self.base + path)
        except httpx.HTTPError as error:
            raise InvalidInput(f"cannot fetch entry bundle {path}: {error}", field="url") from error
        if response.status_code != 200:
            raise MonitorAlarm(
                "missing",
                f"the log does not serve entry bundle {path} (leaves {tile.start} to "
                f"{tile.start + tile.width - 1}), which its tree of size {size} covers: it answered "
                f"{response.status_code}",
            )
        return response.content


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


def fetch_bundles(
    client: LogClient, size: int, *, workers: int = FETCH_WORKERS, ahead: int = FETCH_AHEAD
) -> Iterator[tuple[Tile, bytes]]:
    """Every entry bundle of the tree of ``size`` leaves, in order, fetched by ``workers`` threads at
    most ``ahead`` bundles ahead of the consumer; an error stops the fetching and is raised in order."""
    wanted = (
        Tile(ENTRIES, index, tiles.tile_width(ENTRIES, index, size))
        for index in range(tiles.tiles_of(size, ENTRIES))
    )
    if workers <= 1:
        for tile in wanted:
            yield tile, client.bundle(tile, size=size)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bundles")
    pending: deque[tuple[Tile, Future[bytes]]] = deque()
    try:
        for tile in itertools.islice(wanted, max(ahead, workers)):
            pending.append((tile, pool.submit(client.bundle, tile, size=size)))
        while pending:
            tile, future = pending.popleft()
            data = future.result()
            for following in itertools.islice(wanted, 1):
                pending.append((following, pool.submit(client.bundle, following, size=size)))
            yield tile, data
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def full_root(
    client: LogClient,
    size: int,
    *,
    workers: int = FETCH_WORKERS,
    progress: Progress | None = None,
    what: str = "entries",
) -> bytes:
    """The root recomputed from every entry bundle of the tree of ``size`` leaves, fetched concurrently
    (``fetch_bundles``) while the bundles already here are hashed; only the growing tiles are kept.
    ``MonitorAlarm`` naming the tile for a bundle that is missing, truncated or of the wrong width."""
    frontier: dict[int, bytes] = {}
    done = 0
    for tile, bundle in fetch_bundles(client, size, workers=workers):
        try:
            leaves, count = tiles.bundle_leaf_hashes(bundle)
        except IntegrityFailure as error:
            raise MonitorAlarm(
                "tree-mismatch", f"entry bundle {client.prefix}/{tile.path}: {error.detail}"
            ) from error
        if count != tile.width:
            raise MonitorAlarm(
                "tree-mismatch",
                f"entry bundle {client.prefix}/{tile.path} holds {count} entries, not {tile.width}",
            )
        update = tiles.append_hashes(done, leaves, frontier)
        done = update.size
        frontier = _frontier_after(done, update.tiles, frontier)
        if progress is not None:
            progress(what, done, size)
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
    """The receipt's signature and chain link, and its event's inclusion in the checkpoint's tree (with
    several partitions: in its partition's tree as the checkpoint's latest state entry names it)."""
    receipt = verify_receipt(signed, receipt_key)
    seq = receipt["event"]["seq"]
    size, root = checked.checkpoint.size, checked.checkpoint.root
    count = partition_count(checked.checkpoint)
    leaf = merkle.leaf_hash(canonical_json(receipt["event"]))
    where = f"the log's tree of size {size}"
    if count > 1:
        if not isinstance(seq, int) or seq < 1 or size == 0:
            raise MonitorAlarm("receipt", f"the receipt's event {seq} is not in the log's partitioned tree")
        latest = latest_state(client, checked)
        partition, index = ledger.partition_of_seq(seq, count), ledger.leaf_index(seq, count)
        size, root = latest.trees[partition]
        client = client.partition(partition)
        where = f"partition {partition}'s tree of size {size} (the checkpoint's latest state)"
    else:
        index = seq - 1 if isinstance(seq, int) else -1
    if not 0 <= index < size:
        raise MonitorAlarm("receipt", f"the receipt's event {seq} is not in {where}")
    proof = merkle.inclusion_proof(size, index, tiles.tile_hash_reader(size, client.tiles))
    try:
        merkle.verify_inclusion(proof, size, root, index, leaf)
    except IntegrityFailure as error:
        raise MonitorAlarm(
            "receipt", f"event {seq} of the receipt is not in {where}: it was rewritten"
        ) from error


def latest_state(client: LogClient, checked: VerifiedCheckpoint) -> States:
    """The last state entry of a partitioned log's checkpoint, proven to be its tree's last leaf."""
    [latest] = state_entries(client, checked, checked.checkpoint.size - 1)
    count = partition_count(checked.checkpoint)
    if len(latest.trees) != count:
        raise MonitorAlarm(
            "tree-mismatch",
            f"the latest state entry lists {len(latest.trees)} partitions, the checkpoint names {count}",
        )
    return latest


def check_full(
    client: LogClient,
    checked: VerifiedCheckpoint,
    *,
    workers: int = FETCH_WORKERS,
    progress: Progress | None = None,
) -> list[str]:
    """Recompute the checkpoint's tree from every entry and compare the root; with several partitions,
    also every partition's tree from its events, against the roots the latest state entry names.
    Returns what was established."""
    size, root = checked.checkpoint.size, checked.checkpoint.root
    count = partition_count(checked.checkpoint)
    what = "entries" if count == 1 else "partition states"
    if full_root(client, size, workers=workers, progress=progress, what=what) != root:
        raise MonitorAlarm(
            "tree-mismatch", f"the entries do not hash to the checkpoint's root at size {size}"
        )
    if count == 1:
        return [f"recomputed the tree from all {size} entries"]
    notes = [f"recomputed the tree of partition states from all {size} entries"]
    if size == 0:
        return notes
    latest = latest_state(client, checked)
    for partition, (tree_size, tree_root) in enumerate(latest.trees):
        recomputed = full_root(
            client.partition(partition),
            tree_size,
            workers=workers,
            progress=progress,
            what=f"partition {partition}",
        )
        if recomputed != tree_root:
            raise MonitorAlarm(
                "tree-mismatch",
                f"partition {partition}'s events do not hash to the root the latest state names for its "
                f"{tree_size} events",
            )
    events = sum(tree_size for tree_size, _ in latest.trees)
    notes.append(f"recomputed all {count} partitions' trees from their {events} events")
    return notes


def run(
    client: LogClient,
    *,
    trust: Trust | None,
    state: Path | None,
    full: bool = False,
    receipt: Any = None,
    receipt_key: dict[str, Any] | None = None,
    workers: int = FETCH_WORKERS,
    progress: Progress | None = None,
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
        notes.extend(check_full(client, checked, workers=workers, progress=progress))
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
