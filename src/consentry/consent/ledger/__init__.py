"""The consent ledger: an append-only, SHA-256 hash-chained log of consent events.

``hash = SHA-256(prev_hash || canonical JSON of the event)``, where ``prev_hash`` is the 32 raw bytes of
the previous event's hash (32 zero bytes before the first event) and the canonical JSON has sorted keys,
no spaces, UTF-8, and ``recorded_at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

Writers serialise on the ``ledger_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite write
sessions already hold the database write lock), so concurrent appends never fork the chain.

Partitions: a ledger is created with ``P`` partitions (one by default, which is the ledger described
above). Subject key ``k`` belongs to partition ``partition_of(k, P)`` (the first 8 bytes of
``SHA-256(k)``, big-endian, modulo ``P``); each partition has its own head row, hash chain (starting from
``GENESIS``) and Merkle tree, so writers of different partitions never wait for each other. The ``n``-th
event of partition ``p`` has seq ``(n - 1) * P + p + 1``: seq stays a unique event number, the event's
partition is ``(seq - 1) % P`` and its leaf index in that partition's tree ``(seq - 1) // P``. Every event
of one subject is in one partition, so the order of events below holds per subject.

Order of events (DESIGN.md): "latest" is the greatest ``(recorded_at, seq)``. A live write takes its time
while it holds the head, and never earlier than the latest time already in the chain (kept on the head
row), so for live writes seq order and time order are the same and the state is the last event. A bulk
import carries historic times, which it may not place in the future; its events rank by their own times,
so an import describes the past and never overrides a choice recorded live after the times it carries.
"""

from consentry.consent.ledger.bulk import append_table
from consentry.consent.ledger.chain import (
    GENESIS,
    LEDGER_CLIENTS,
    SOURCES,
    VALUES,
    Appended,
    EventRecord,
    Head,
    NewEvent,
    append,
    canonical_json,
    chain_hash,
    current_time,
    document_of,
    event_document,
    format_time,
    heads,
    leaf_index,
    link_events,
    live_time,
    lock_head,
    lock_heads,
    new_subject_key,
    partition_count,
    partition_of,
    partition_of_seq,
    seq_of,
    set_partitions,
    subject_key_for,
    subject_keys,
    subject_keys_for,
)
from consentry.consent.ledger.verify import VerifyReport, verify

__all__ = [
    "GENESIS",
    "LEDGER_CLIENTS",
    "SOURCES",
    "VALUES",
    "Appended",
    "EventRecord",
    "Head",
    "NewEvent",
    "VerifyReport",
    "append",
    "append_table",
    "canonical_json",
    "chain_hash",
    "current_time",
    "document_of",
    "event_document",
    "format_time",
    "heads",
    "leaf_index",
    "link_events",
    "live_time",
    "lock_head",
    "lock_heads",
    "new_subject_key",
    "partition_count",
    "partition_of",
    "partition_of_seq",
    "seq_of",
    "set_partitions",
    "subject_key_for",
    "subject_keys",
    "subject_keys_for",
    "verify",
]
