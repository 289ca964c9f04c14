"""The export ZIP as it is written: members dated and hashed as they stream in, JSON with UTC ISO 8601
times, and the list of files the manifest carries.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

PAGE = 2_000


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


class ZipWriter:
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


def iso(value: datetime | None) -> str | None:
    return None if value is None else _json_default(value)
