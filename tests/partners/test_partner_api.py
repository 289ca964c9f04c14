"""The partner API: own releases and files (with byte ranges), the revocation feed and acknowledgements.

Releases are real, built by the dataset builder from the datasets tests' scenario lake; revocations are
inserted directly (the revocation engine has its own tests).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

from consentry.db import utcnow
from consentry.errors import NotFound
from consentry.partners import service
from consentry.partners.models import Revocation
from tests.partners.conftest import A, B, World, add_revocation


def manifest_of(world: World, partner: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((Path(world.releases[partner].path) / "manifest.json").read_text())
    return manifest


def a_parquet_file(world: World) -> dict[str, Any]:
    """The largest Parquet shard of partner A's release, as its manifest lists it."""
    entries = [f for f in manifest_of(world, A)["files"] if f["path"].endswith(".parquet")]
    return max(entries, key=lambda f: f["bytes"])


def files_url(world: World, partner: str, path: str = "") -> str:
    base = f"/v1/partner/releases/{world.releases[partner].id}/files"
    return f"{base}/{path}" if path else base


# --- releases ---------------------------------------------------------------------------------------


def test_a_partner_lists_only_its_own_releases_with_a_manifest_summary(
    client: TestClient, world: World
) -> None:
    listed = client.get("/v1/partner/releases", headers=world.auth(A))
    assert listed.status_code == 200
    (release,) = listed.json()
    manifest = manifest_of(world, A)
    assert release["id"] == world.releases[A].id
    assert release["rows"] == manifest["rows"] and release["categories"] == manifest["categories"]
    assert release["manifest_sha256"] == world.releases[A].manifest_sha256
    assert "path" not in release and world.releases[A].path not in listed.text
    assert [r["id"] for r in client.get("/v1/partner/releases", headers=world.auth(B)).json()] == [
        world.releases[B].id
    ]
    detail = client.get(f"/v1/partner/releases/{world.releases[A].id}", headers=world.auth(A))
    assert detail.status_code == 200 and detail.json()["manifest"] == manifest


def test_another_partners_release_is_not_found_exactly_like_a_missing_one(
    client: TestClient, world: World
) -> None:
    theirs, missing = world.releases[A].id, "rel-20260601-000000-000000"
    for suffix in ("", "/files", "/files/manifest.json", "/files/README.md"):
        other = client.get(f"/v1/partner/releases/{theirs}{suffix}", headers=world.auth(B))
        absent = client.get(f"/v1/partner/releases/{missing}{suffix}", headers=world.auth(B))
        assert other.status_code == absent.status_code == 404, suffix
        assert other.json()["detail"].replace(theirs, "X") == absent.json()["detail"].replace(missing, "X")


def test_the_files_listed_are_the_manifests_except_lineage_plus_the_manifest(
    client: TestClient, world: World
) -> None:
    manifest = manifest_of(world, A)
    listed = client.get(files_url(world, A), headers=world.auth(A)).json()
    folder = Path(world.releases[A].path)
    expected = {f["path"] for f in manifest["files"] if not f["path"].startswith("lineage/")} | {
        "manifest.json"
    }
    assert {f["path"] for f in listed} == expected
    assert "README.md" in expected and any(p.startswith("data/posts/") for p in expected)
    assert any(f["path"].startswith("lineage/") for f in manifest["files"])  # there is lineage to hide
    for entry in listed:
        data = (folder / entry["path"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()


# --- downloads --------------------------------------------------------------------------------------


def test_a_whole_file_comes_with_its_digest_etag_and_accept_ranges(client: TestClient, world: World) -> None:
    entry = a_parquet_file(world)
    response = client.get(files_url(world, A, entry["path"]), headers=world.auth(A))
    assert response.status_code == 200
    data = (Path(world.releases[A].path) / entry["path"]).read_bytes()
    assert response.content == data and hashlib.sha256(response.content).hexdigest() == entry["sha256"]
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == f'"{entry["sha256"]}"'
    assert response.headers["x-checksum-sha256"] == entry["sha256"]
    digest = base64.b64encode(bytes.fromhex(entry["sha256"])).decode()
    assert response.headers["repr-digest"] == f"sha-256=:{digest}:"
    assert int(response.headers["content-length"]) == entry["bytes"]
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    manifest = client.get(files_url(world, A, "manifest.json"), headers=world.auth(A))
    assert hashlib.sha256(manifest.content).hexdigest() == world.releases[A].manifest_sha256
    assert manifest.headers["x-checksum-sha256"] == world.releases[A].manifest_sha256


def ranges(size: int) -> list[tuple[str, int, int]]:
    """(Range header, first byte, last byte) cases for a file of ``size`` bytes."""
    return [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, size - 1),
        ("bytes=-50", size - 50, size - 1),
        ("bytes=10-10", 10, 10),
        (f"bytes={size - 5}-{size + 1000}", size - 5, size - 1),
        (f"bytes=-{size + 10}", 0, size - 1),
        ("bytes = 3 - 7", 3, 7),
        ("BYTES=0-0", 0, 0),
    ]


def test_byte_ranges_return_exactly_those_bytes_of_the_real_file(client: TestClient, world: World) -> None:
    entry = a_parquet_file(world)
    data = (Path(world.releases[A].path) / entry["path"]).read_bytes()
    size = len(data)
    assert size > 200
    for header, first, last in ranges(size):
        response = client.get(files_url(world, A, entry["path"]), headers={**world.auth(A), "Range": header})
        assert response.status_code == 206, header
        assert response.content == data[first : last + 1], header
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert int(response.headers["content-length"]) == last - first + 1
        assert response.headers["x-checksum-sha256"] == entry["sha256"]  # of the whole file


def test_a_download_resumed_in_ranges_matches_the_manifest_sha256(client: TestClient, world: World) -> None:
    entry = a_parquet_file(world)
    url, parts, start = files_url(world, A, entry["path"]), [], 0
    step = max(1, entry["bytes"] // 7)
    while start < entry["bytes"]:
        response = client.get(url, headers={**world.auth(A), "Range": f"bytes={start}-{start + step - 1}"})
        assert response.status_code == 206
        parts.append(response.content)
        start += len(response.content)
    assert len(parts) > 1
    assert hashlib.sha256(b"".join(parts)).hexdigest() == entry["sha256"]


def test_unsatisfiable_ranges_get_416_with_the_size(client: TestClient, world: World) -> None:
    entry = a_parquet_file(world)
    size = entry["bytes"]
    for header in (f"bytes={size}-", f"bytes={size}-{size + 9}", "bytes=-0"):
        response = client.get(files_url(world, A, entry["path"]), headers={**world.auth(A), "Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{size}"
        assert response.headers["content-type"] == "application/problem+json"


def test_ranges_it_does_not_serve_are_ignored_and_the_whole_file_is_sent(
    client: TestClient, world: World
) -> None:
    entry = a_parquet_file(world)
    for header in ("items=0-5", "bytes=0-5,10-20", "bytes=9-2", "bytes=abc", "bytes=-", "bytes=1-2-3"):
        response = client.get(files_url(world, A, entry["path"]), headers={**world.auth(A), "Range": header})
        assert response.status_code == 200 and len(response.content) == entry["bytes"], header


def test_numbers_of_any_length_are_clamped_or_unsatisfiable_as_documented(
    client: TestClient, world: World
) -> None:
    """A range end beyond the file is clamped however many digits it has; a start beyond it selects
    nothing (416); a suffix longer than the file is the whole file (206)."""
    entry = a_parquet_file(world)
    data = (Path(world.releases[A].path) / entry["path"]).read_bytes()
    size = len(data)
    url = files_url(world, A, entry["path"])
    huge = ["9" * 19, "1" + "0" * 19, "9" * 20, "9" * 25, "1" + "0" * 60, "9" * 5000]
    cases: list[tuple[str, int | None, int]] = []
    for digits in huge:
        cases += [
            (f"bytes=0-{digits}", 0, size - 1),
            (f"bytes=7-{digits}", 7, size - 1),
            (f"bytes=-{digits}", 0, size - 1),
            (f"bytes={digits}-", None, 0),
            (f"bytes={digits}-{digits}", None, 0),
            (f"bytes={size}-{digits}", None, 0),
        ]
    cases += [
        ("bytes=" + "0" * 30 + "5-" + "0" * 30 + "9", 5, 9),  # leading zeros are still numbers
        ("bytes=-" + "0" * 25 + "3", size - 3, size - 1),
        ("bytes=" + "0" * 25 + "-", 0, size - 1),
    ]
    for header, first, last in cases:
        response = client.get(url, headers={**world.auth(A), "Range": header})
        shown = header if len(header) < 80 else header[:40] + "..."
        if first is None:
            assert response.status_code == 416, (shown, response.status_code)
            assert response.headers["content-range"] == f"bytes */{size}", shown
            continue
        assert response.status_code == 206, (shown, response.status_code)
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}", shown
        assert response.content == data[first : last + 1], shown


def test_malformed_and_inverted_ranges_with_huge_numbers_send_the_whole_file(
    client: TestClient, world: World
) -> None:
    entry = a_parquet_file(world)
    url = files_url(world, A, entry["path"])
    big = "9" * 30
    for header in (
        f"bytes={big}-5",  # last before first: invalid, ignored
        f"bytes={big}1-{big}",
        f"bytes=0-{big},5-9",
        f"bytes={big}",
        f"bytes=-{big}-",
        f"bytes=0x10-{big}",
        f"bytes=+5-{big}",
        f"bytes=5_0-{big}",
        "bytes=\u00b2-9",  # SUPERSCRIPT TWO: str.isdigit() says yes, int() says no
        "bytes=0-\u00b9",
    ):
        raw = header.encode("latin-1")  # header bytes as sent; the server decodes them as Latin-1
        response = client.get(url, headers={**world.auth(A), "Range": raw})  # type: ignore[dict-item]
        assert response.status_code == 200, (header[:60], response.status_code)
        assert len(response.content) == entry["bytes"], header[:60]
        assert "content-range" not in response.headers


def number(*, size: int) -> st.SearchStrategy[str]:
    """Byte positions as a client writes them: near the file's size or huge, sometimes zero-padded."""
    value = st.one_of(st.integers(0, size + 20), st.integers(size, 10**40))
    return st.builds(lambda v, pad: "0" * pad + str(v), value, st.integers(0, 25))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_valid_single_ranges_agree_with_starlettes_file_response(
    client: TestClient, world: World, data: st.DataObject
) -> None:
    """Starlette's ``FileResponse`` (range support written independently of ours) serving the same file
    is the reference for every valid single range: status, ``Content-Range`` and bytes."""
    entry = a_parquet_file(world)
    file = Path(world.releases[A].path) / entry["path"]
    size = entry["bytes"]
    first = data.draw(st.one_of(st.just(""), number(size=size)), label="first")
    last = data.draw(st.one_of(st.just(""), number(size=size)), label="last")
    assume(first or last)
    assume(not (first and last) or int(last) >= int(first))  # otherwise invalid (ignored, tested above)
    header = f"bytes={first}-{last}"
    reference = Starlette(routes=[Route("/f", lambda request: FileResponse(file))])
    with TestClient(reference) as other:
        expected = other.get("/f", headers={"Range": header})
    got = client.get(files_url(world, A, entry["path"]), headers={**world.auth(A), "Range": header})
    assert got.status_code == expected.status_code, header
    assert got.headers.get("content-range") == expected.headers.get("content-range"), header
    if got.status_code == 206:
        assert got.content == expected.content, header


def test_if_range_and_if_none_match_use_the_sha256_etag(client: TestClient, world: World) -> None:
    entry = a_parquet_file(world)
    url, etag = files_url(world, A, entry["path"]), f'"{entry["sha256"]}"'
    same = client.get(url, headers={**world.auth(A), "Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206 and len(same.content) == 10
    changed = client.get(url, headers={**world.auth(A), "Range": "bytes=0-9", "If-Range": '"other"'})
    assert changed.status_code == 200 and len(changed.content) == entry["bytes"]
    cached = client.get(url, headers={**world.auth(A), "If-None-Match": f'"x", {etag}'})
    assert cached.status_code == 304 and cached.content == b""
    head = client.head(url, headers={**world.auth(A), "Range": "bytes=5-"})
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-range"] == f"bytes 5-{entry['bytes'] - 1}/{entry['bytes']}"


TRAVERSALS = [
    "..%2Fmanifest.json",
    "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2Fetc%2Fpasswd",
    "data%2F..%2Fmanifest.json",
    "data/posts/..%2F..%2FREADME.md",
    "lineage/authors-posts.roaring",
    "lineage/by-author-posts.npy",
    "data/posts",
    "data",
    "MANIFEST.JSON",
    "%2E",
    "%2E%2E/%2E%2E/manifest.json",
]


def test_nothing_but_listed_files_can_be_downloaded(client: TestClient, world: World) -> None:
    for path in TRAVERSALS:
        response = client.get(files_url(world, A, path), headers=world.auth(A))
        assert response.status_code == (422 if "%00" in path else 404), (path, response.status_code)
        assert "has no file" in response.json()["detail"], path  # refused by the handler, not by routing
    nul = client.get(files_url(world, A, "manifest.json%00"), headers=world.auth(A))
    assert nul.status_code == 422 and nul.json()["field"] == "path"  # NUL: refused everywhere alike


def tricks(listed: str) -> list[str]:
    """Spellings of a listed path (``data/posts/<name>``) that name something else, raw as sent: encoded
    slashes make one segment of several, dot segments, backslashes, NUL, double encoding."""
    folder, name = listed.rsplit("/", 1)
    assert folder == "data/posts"
    return [
        f"data%2Fposts%2F{name}",
        f"data%2fposts%2f{name}",
        f"data/posts%2F{name}",
        f"data%2Fposts/{name}",
        f"data/posts/%2E/{name}",
        f"data/posts/./{name}",
        f"data/./posts/{name}",
        f"data/posts/../posts/{name}",
        f"data/posts/%2E%2E/posts/{name}",
        f"data/posts/%2e%2e/posts/{name}",
        f"data//posts/{name}",
        f"data/posts//{name}",
        f"data/posts/{name}/",
        f"data/posts/{name}%00",
        f"data/posts/{name}%00.txt",
        f"data%5Cposts%5C{name}",
        f"data\\posts\\{name}",
        f"data/posts%5C{name}",
        f"data%252Fposts%252F{name}",
        f"data%C0%AFposts%C0%AF{name}",  # an overlong UTF-8 slash
        f"data%EF%BC%8Fposts%EF%BC%8F{name}",  # FULLWIDTH SOLIDUS
        f"/data/posts/{name}",
        f"%2Fdata/posts/{name}",
        f"./data/posts/{name}",
    ]


def test_encoded_slashes_and_other_path_tricks_are_404(client: TestClient, world: World) -> None:
    listed = a_parquet_file(world)["path"]
    assert client.get(files_url(world, A, listed), headers=world.auth(A)).status_code == 200
    for path in tricks(listed):
        if "/./" in path or "/../" in path or path.startswith("./"):
            continue  # the test client removes dot segments before sending; see the live test below
        response = client.get(files_url(world, A, path), headers=world.auth(A))
        assert response.status_code == (422 if "%00" in path else 404), (path, response.status_code)
        assert response.headers["content-type"] == "application/problem+json", path


def raw_get(port: int, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """``GET target`` sent byte for byte (no client-side normalisation) to 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@contextmanager
def served(app: FastAPI) -> Iterator[int]:
    """The application served by uvicorn on a loopback port (on a thread); yields the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="partner-files-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_path_tricks_sent_raw_to_a_real_server_are_404(app: FastAPI, world: World) -> None:
    """The same spellings byte for byte to uvicorn, which decodes the path before routing."""
    entry = a_parquet_file(world)
    data = (Path(world.releases[A].path) / entry["path"]).read_bytes()
    base = files_url(world, A)
    with served(app) as port:
        status, body = raw_get(port, f"{base}/{entry['path']}", world.auth(A))
        assert status == 200 and body == data
        # an unreserved letter percent-encoded is the same letter (RFC 3986, 2.3): the same file
        encoded = entry["path"].replace("posts", "p%6Fsts")
        assert raw_get(port, f"{base}/{encoded}", world.auth(A)) == (200, data)
        for path in tricks(entry["path"]):
            status, body = raw_get(port, f"{base}/{path}", world.auth(A))
            assert status == (422 if "%00" in path else 404), (path, status)
            assert b"PAR1" not in body, path


def test_a_listed_path_resolving_outside_the_release_is_not_served(world: World, tmp_path: Path) -> None:
    """Defence in depth: even a manifest entry cannot lead outside the release folder."""
    release = world.releases[A]
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    link = Path(release.path) / "data" / "escape.txt"
    link.symlink_to(outside)
    manifest = manifest_of(world, A)
    data = (Path(release.path) / "manifest.json").read_bytes()
    for path in ("data/escape.txt", "../secret.txt", "/etc/passwd"):
        forged = {**manifest, "files": [{"path": path, "bytes": 9, "sha256": "0" * 64}]}
        with pytest.raises(NotFound):
            service.release_file(release, forged, data, path=path)


def test_a_withdrawn_release_is_no_longer_served(client: TestClient, world: World) -> None:
    with world.database.write() as session:
        session.get(type(world.releases[A]), world.releases[A].id).status = "withdrawn"  # type: ignore[union-attr]
    assert client.get("/v1/partner/releases", headers=world.auth(A)).json() == []
    assert client.get(files_url(world, A, "manifest.json"), headers=world.auth(A)).status_code == 404


# --- the revocation feed ----------------------------------------------------------------------------


def test_the_feed_pages_through_the_partners_own_revocations_in_id_order(
    client: TestClient, world: World
) -> None:
    ids: dict[str, list[int]] = {A: [], B: []}
    for index in range(7):
        partner = B if index in (1, 4) else A
        ids[partner].append(
            add_revocation(world.database, world.releases[partner], record_ids=[101, 104 + index])
        )
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": cursor} if cursor is not None else {})}
        page = client.get("/v1/partner/revocations", params=params, headers=world.auth(A)).json()
        pages += 1
        seen += [item["id"] for item in page["items"]]
        assert page["next_cursor"] is not None
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == ids[A] and pages == 3
    item = client.get("/v1/partner/revocations", headers=world.auth(A)).json()["items"][0]
    assert item["release"] == world.releases[A].id and item["category"] == "posts"
    assert item["record_ids"] == [101, 104] and item["reason"] == "opt_out" and item["acknowledged"] is False
    assert {"created_at", "deadline_at", "acknowledged_at", "deleted_at", "method", "note"} <= item.keys()
    assert "account_id" not in item and "setting" not in item
    # at the end, the cursor stays put and only new revocations appear
    end = client.get("/v1/partner/revocations", params={"after": cursor}, headers=world.auth(A)).json()
    # (each page also cites the latest checkpoint once the publisher has signed one: not asserted here)
    end.pop("checkpoint", None)
    assert end == {"items": [], "next_cursor": cursor, "has_more": False}
    new = add_revocation(world.database, world.releases[A])
    later = client.get("/v1/partner/revocations", params={"after": cursor}, headers=world.auth(A)).json()
    assert [i["id"] for i in later["items"]] == [new]
    theirs = client.get("/v1/partner/revocations", headers=world.auth(B)).json()
    assert [i["id"] for i in theirs["items"]] == ids[B]


def test_a_bad_cursor_is_422_naming_after(client: TestClient, world: World) -> None:
    for after in ("abc", "-1", "1.5", "1e3", "9" * 40, " 1"):
        response = client.get("/v1/partner/revocations", params={"after": after}, headers=world.auth(A))
        assert response.status_code == 422 and response.json()["field"] == "after", after


def test_the_feed_can_be_narrowed_to_open_or_acknowledged_revocations(
    client: TestClient, world: World
) -> None:
    open_ = add_revocation(world.database, world.releases[A])
    done = add_revocation(world.database, world.releases[A], acknowledged=True)
    for value, expected in (("false", [open_]), ("true", [done])):
        page = client.get(
            "/v1/partner/revocations", params={"acknowledged": value}, headers=world.auth(A)
        ).json()
        assert [i["id"] for i in page["items"]] == expected


# --- acknowledgements -------------------------------------------------------------------------------


def stored(world: World, revocation_id: int) -> tuple[Any, ...]:
    with world.database.read() as session:
        r = session.scalars(select(Revocation).where(Revocation.id == revocation_id)).one()
        return (r.acknowledged_at, r.deleted_at, r.ack_method, r.ack_note)


def test_an_acknowledgement_is_recorded_once_and_repeating_it_changes_nothing(
    client: TestClient, world: World
) -> None:
    revocation = add_revocation(world.database, world.releases[A])
    deleted_at = utcnow() - timedelta(minutes=5)
    url = f"/v1/partner/revocations/{revocation}/ack"
    first = client.post(
        url,
        json={"deleted_at": deleted_at.isoformat(), "method": "hard delete", "note": "batch 7"},
        headers=world.auth(A),
    )
    assert first.status_code == 200, first.text
    out = first.json()
    assert out["repeated"] is False and out["method"] == "hard delete" and out["note"] == "batch 7"
    assert datetime.fromisoformat(out["deleted_at"]) == deleted_at
    before = stored(world, revocation)
    assert before[0] is not None and before[1:] == (deleted_at, "hard delete", "batch 7")

    again = client.post(
        url,
        json={"deleted_at": utcnow().isoformat(), "method": "something else", "note": None},
        headers=world.auth(A),
    )
    assert again.status_code == 200
    assert again.json() == {**out, "repeated": True}
    assert stored(world, revocation) == before
    item = client.get("/v1/partner/revocations", headers=world.auth(A)).json()["items"][0]
    assert item["acknowledged"] is True and item["method"] == "hard delete" and item["note"] == "batch 7"


def test_a_naive_deleted_at_is_utc(client: TestClient, world: World) -> None:
    revocation = add_revocation(world.database, world.releases[A])
    naive = (utcnow() - timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    response = client.post(
        f"/v1/partner/revocations/{revocation}/ack",
        json={"deleted_at": naive.isoformat(), "method": "purge"},
        headers=world.auth(A),
    )
    assert response.status_code == 200
    assert stored(world, revocation)[1] == naive.replace(tzinfo=UTC)


INVALID_ACKS: list[tuple[dict[str, Any], str]] = [
    ({"deleted_at": "FUTURE", "method": "purge"}, "deleted_at"),
    ({"deleted_at": "PAST", "method": ""}, "method"),
    ({"deleted_at": "PAST", "method": "   "}, "method"),
    ({"deleted_at": "PAST", "method": "m" * 101}, "method"),
    ({"deleted_at": "PAST", "method": "purge", "note": "n" * 2001}, "note"),
    ({"deleted_at": "yesterday", "method": "purge"}, "deleted_at"),
    ({"method": "purge"}, "deleted_at"),
    ({"deleted_at": "PAST", "method": "purge", "extra": 1}, "extra"),
]


def test_invalid_acknowledgements_are_422_and_change_nothing(client: TestClient, world: World) -> None:
    revocation = add_revocation(world.database, world.releases[A])
    times = {"FUTURE": utcnow() + timedelta(minutes=10), "PAST": utcnow() - timedelta(minutes=1)}
    for case, field in INVALID_ACKS:
        ack = (
            {**case, "deleted_at": times[case["deleted_at"]].isoformat()}
            if case.get("deleted_at") in times
            else case
        )
        response = client.post(f"/v1/partner/revocations/{revocation}/ack", json=ack, headers=world.auth(A))
        assert response.status_code == 422, (case, response.text)
        assert response.json()["field"] == field, case
    assert stored(world, revocation) == (None, None, None, None)


def test_another_partners_revocation_is_not_found_and_stays_open(client: TestClient, world: World) -> None:
    theirs = add_revocation(world.database, world.releases[A])
    ack = {"deleted_at": (utcnow() - timedelta(minutes=1)).isoformat(), "method": "purge"}
    other = client.post(f"/v1/partner/revocations/{theirs}/ack", json=ack, headers=world.auth(B))
    missing = client.post(f"/v1/partner/revocations/{theirs + 1000}/ack", json=ack, headers=world.auth(B))
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"].replace(str(theirs), "X") == missing.json()["detail"].replace(
        str(theirs + 1000), "X"
    )
    assert stored(world, theirs) == (None, None, None, None)
    assert client.get("/v1/partner/revocations", headers=world.auth(B)).json()["items"] == []
    huge = client.post(f"/v1/partner/revocations/{2**70}/ack", json=ack, headers=world.auth(B))
    assert huge.status_code == 422 and huge.json()["field"] == "revocation_id"
