"""Releases built from Iceberg and Delta tables (written by pyiceberg and deltalake) are identical, record
for record, to those built from the same data as Parquet folders, at the snapshot named; the manifest
records the snapshots, and building again from them gives the same release."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consentry.cli import app
from consentry.config import Settings, get_settings
from consentry.consent.service import ConsentContext
from consentry.datasets.eligibility import Retention
from consentry.db import Database
from consentry.errors import InvalidInput
from consentry.lake.source import LakeSpec, lake_spec
from consentry.migrate import upgrade
from tests.datasets.conftest import CATEGORIES, build, load, released
from tests.lake.tables import (
    NAMESPACE,
    TAG,
    add_position_deletes,
    iceberg_catalog,
    overwrite_delta,
    overwrite_iceberg,
    read_folder,
    second_version,
    write_delta,
    write_iceberg,
)

AS_OF = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Lakes:
    """The same data as Parquet folders (two versions), Iceberg tables and Delta tables."""

    first: Path
    second: Path
    catalog: str
    delta: Path
    tagged: dict[str, int]
    current: int
    between: datetime
    database: Database
    ctx: ConsentContext


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory, generated_lake: Path) -> Iterator[Lakes]:
    folder = tmp_path_factory.mktemp("lake-sources")
    second, posts = second_version(generated_lake, folder / "lake-2")
    catalog_uri = f"sqlite:///{folder / 'catalog.db'}"
    catalog = iceberg_catalog(catalog_uri, folder / "warehouse")
    tagged = write_iceberg(generated_lake, catalog)
    write_delta(generated_lake, folder / "delta")
    between = datetime.now(UTC)
    time.sleep(0.01)
    current = overwrite_iceberg(catalog, "posts", posts)
    catalog.engine.dispose()
    overwrite_delta(folder / "delta", "posts", posts)
    url = f"sqlite:///{folder / 'consentry.db'}"
    database = Database(url)
    upgrade(database)
    ctx = ConsentContext.from_settings(Settings(home=folder / "home", database_url=url))
    load(database, ctx, generated_lake)
    yield Lakes(
        generated_lake, second, catalog_uri, folder / "delta", tagged, current, between, database, ctx
    )
    database.dispose()


def release(lakes: Lakes, lake: Path | LakeSpec, out: Path) -> dict[str, Any]:
    """Build a third-party release of both categories (retention and scrubbing on); its manifest."""
    build(
        lakes.database,
        lakes.ctx,
        lake,
        out,
        recipient="partner",
        categories=CATEGORIES,
        as_of=AS_OF,
        retention=Retention({"posts": 700}),
    )
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return manifest


def same_release(one: Path, other: Path) -> None:
    for category in CATEGORIES:
        left, right = released(one, category), released(other, category)
        assert left.num_rows > 0
        assert left.equals(right), category


def test_iceberg_and_delta_releases_equal_the_parquet_folder_release(lakes: Lakes, tmp_path: Path) -> None:
    folders = {1: tmp_path / "folder-1", 2: tmp_path / "folder-2"}
    manifests = {
        version: release(lakes, lake, folders[version])
        for version, lake in ((1, lakes.first), (2, lakes.second))
    }
    assert manifests[1]["lake"]["format"] == "parquet"
    # the second version deletes posts: a release that read the wrong snapshot would differ
    assert manifests[2]["rows"]["posts"] < manifests[1]["rows"]["posts"]
    assert not released(folders[1], "posts").equals(released(folders[2], "posts"))

    iceberg = {"format": "iceberg", "catalog": lakes.catalog, "namespace": NAMESPACE}
    cases = [
        (lake_spec(**iceberg, snapshot=[TAG]), 1),
        (lake_spec(**iceberg), 2),
        (lake_spec(**iceberg, snapshot_at=lakes.between), 1),
        (lake_spec(format="delta", lake=lakes.delta, snapshot=["0"]), 1),
        (lake_spec(format="delta", lake=lakes.delta), 2),
    ]
    for number, (spec, version) in enumerate(cases):
        out = tmp_path / f"case-{number}"
        manifest = release(lakes, spec, out)
        same_release(out, folders[version])
        assert manifest["rows"] == manifests[version]["rows"]
        assert manifest["excluded"] == manifests[version]["excluded"]
        recorded = manifest["lake"]
        assert recorded["format"] == spec.format
        if spec.format == "iceberg":
            assert recorded["namespace"] == NAMESPACE
            posts = lakes.tagged["posts"] if version == 1 else lakes.current
            assert recorded["tables"]["posts"]["snapshot_id"] == posts
            assert recorded["tables"]["accounts"]["snapshot_id"] == lakes.tagged["accounts"]
        else:
            assert recorded["tables"]["posts"]["version"] == version - 1


def test_a_release_is_rebuilt_from_the_snapshots_its_manifest_records(
    generated_lake: Path, lakes: Lakes, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = iceberg_catalog(uri, tmp_path / "warehouse")
    write_iceberg(generated_lake, catalog)
    spec = lake_spec(format="iceberg", catalog=uri, namespace=NAMESPACE)
    first = release(lakes, spec, tmp_path / "first")
    pinned = [f"{name}={table['snapshot_id']}" for name, table in first["lake"]["tables"].items()]
    # the tables move on: other posts deleted, then a delete file beside the data
    overwrite_iceberg(catalog, "posts", read_folder(lakes.second, "posts"))
    add_position_deletes(catalog, "posts", [3])
    catalog.engine.dispose()
    with pytest.raises(InvalidInput, match="delete file") as caught:
        release(lakes, spec, tmp_path / "refused")
    assert caught.value.field == "lake"
    assert not (tmp_path / "refused").exists()

    again = release(
        lakes,
        lake_spec(format="iceberg", catalog=uri, namespace=NAMESPACE, snapshot=pinned),
        tmp_path / "again",
    )
    same_release(tmp_path / "first", tmp_path / "again")
    assert again["lake"]["tables"] == first["lake"]["tables"]
    assert again["lake"]["fingerprint"] == first["lake"]["fingerprint"]


def test_dataset_build_reads_an_iceberg_lake_from_the_command_line(
    lakes: Lakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSENTRY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", lakes.database.url)
    get_settings.cache_clear()
    try:
        arguments = ["dataset", "build", "--recipient", "partner", "--categories", "posts"]
        arguments += ["--as-of", AS_OF.isoformat(), "--retain", "posts=700"]
        result = CliRunner().invoke(
            app,
            [
                *arguments,
                "--out",
                str(tmp_path / "cli"),
                "--lake-format",
                "iceberg",
                "--catalog",
                lakes.catalog,
                "--namespace",
                NAMESPACE,
                "--snapshot",
                TAG,
            ],
        )
        assert result.exit_code == 0, result.output
        assert f"posts {lakes.tagged['posts']}" in result.output
        release(lakes, lakes.first, tmp_path / "folder")
        assert released(tmp_path / "cli", "posts").equals(released(tmp_path / "folder", "posts"))
        refused = CliRunner().invoke(
            app, [*arguments, "--out", str(tmp_path / "x"), "--lake", str(lakes.first), "--snapshot", "v1"]
        )
        assert refused.exit_code == 2 and "snapshot" in refused.output
        refused = CliRunner().invoke(
            app,
            [
                *arguments,
                "--out",
                str(tmp_path / "x"),
                "--lake",
                str(lakes.first),
                "--spark-master",
                "local[2]",
            ],
        )
        assert refused.exit_code == 2 and "Spark engine" in refused.output
        assert not (tmp_path / "x").exists()
    finally:
        get_settings.cache_clear()
