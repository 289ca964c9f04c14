"""The dataset card and the shards it declares: what Hugging Face ``datasets`` loads from a release."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from consentry.consent.service import ConsentContext
from consentry.datasets import lineage
from consentry.datasets.eligibility import SPECS
from consentry.datasets.manifest import size_category
from consentry.db import Database
from tests.datasets.conftest import CATEGORIES, build, released

DOCS = Path(__file__).parents[2] / "docs" / "datasets.md"


def test_size_categories() -> None:
    assert size_category(0) == "n<1K"
    assert size_category(999) == "n<1K"
    assert size_category(1000) == "1K<n<10K"
    assert size_category(4_838_037) == "1M<n<10M"
    assert size_category(10**12) == "n>1B"


@pytest.fixture
def hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Hugging Face ``datasets``, offline, with its caches under ``tmp_path``."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    # the documented snippets take the default cache: one per test (the module read HF_HOME once)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    return datasets


def as_table(rows: list[dict[str, Any]], category: str) -> pa.Table:
    """Rows as ``datasets`` yields them, back in the release schema, sorted by id."""
    schema = SPECS[category].schema
    return pa.Table.from_pylist(rows, schema=schema).sort_by("id")


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of a Markdown text that load something with ``datasets``."""
    blocks = re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)
    return [block for block in blocks if "load_dataset" in block]


def run_snippet(
    hf: ModuleType, code: str, where: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, pa.Table]:
    """Run a documented snippet in ``where``; returns each config it loaded (known by its columns)."""
    monkeypatch.chdir(where)
    namespace: dict[str, Any] = {}
    exec(compile(code, "snippet", "exec"), namespace)  # the documented code, exactly as written
    found = {}
    for value in namespace.values():
        if isinstance(value, hf.DatasetDict | hf.IterableDatasetDict):
            value = value["train"]
        if isinstance(value, hf.Dataset | hf.IterableDataset):
            (category,) = [c for c, spec in SPECS.items() if list(value.features) == spec.schema.names]
            found[category] = as_table(list(value), category)
    return found


def check_loads(hf: ModuleType, out: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Load every config of a release the ways docs/datasets.md and the dataset card show and compare
    each with the manifest, the lineage and the shards; returns the rows per config."""
    manifest = json.loads((out / "manifest.json").read_text())
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in header["configs"]] == manifest["categories"]
    shards = {}
    for category in manifest["categories"]:
        expected_ids = sorted(lineage.read_bitmap(lineage.records_path(out, category)))
        shards[category] = released(out, category)
        assert shards[category]["id"].to_pylist() == expected_ids
        assert len(expected_ids) == manifest["rows"][category]
        if expected_ids:  # a config with rows also loads into the local Arrow cache
            cached = hf.load_dataset(str(out), category, split="train", cache_dir=str(cache))
            assert as_table(cached.to_list(), category).equals(shards[category])

    (docs,) = python_blocks(DOCS.read_text())
    assert out.name == "release"  # the name the documentation uses
    assert run_snippet(hf, docs, out.parent, monkeypatch) == shards
    (shown,) = python_blocks(card)
    assert run_snippet(hf, shown, out, monkeypatch) == shards
    return {category: table.num_rows for category, table in shards.items()}


def test_a_third_party_release_with_several_configs_loads(
    scenario: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    tmp_path: Path,
    hf: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "release"
    build(scenario, ctx, scenario_lake, out, recipient="partner", categories=CATEGORIES)
    rows = check_loads(hf, out, tmp_path / "cache", monkeypatch)
    assert rows["posts"] > 0 and rows["assistant_interactions"] > 0


def test_an_empty_release_loads(
    scenario: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    tmp_path: Path,
    hf: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "release"  # every record of the lake is created after `until`
    release = build(
        scenario, ctx, scenario_lake, out, categories=CATEGORIES, until=datetime(2001, 1, 1, tzinfo=UTC)
    )
    assert release.rows == 0
    assert check_loads(hf, out, tmp_path / "cache", monkeypatch) == {"posts": 0, "assistant_interactions": 0}
    for category in CATEGORIES:  # one shard of the config's schema, no rows, no (empty) row group
        (shard,) = sorted((out / "data" / category).glob("*.parquet"))
        assert shard.name == "train-00000-of-00001.parquet"
        metadata = pq.ParquetFile(shard).metadata
        assert (metadata.num_rows, metadata.num_row_groups) == (0, 0)
        found = pq.read_schema(shard)
        assert [(f.name, f.type) for f in found] == [(f.name, f.type) for f in SPECS[category].schema]


def test_an_incremental_release_without_new_rows_loads(
    scenario: Database,
    ctx: ConsentContext,
    scenario_lake: Path,
    tmp_path: Path,
    hf: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = build(scenario, ctx, scenario_lake, tmp_path / "first" / "release", categories=CATEGORIES)
    check_loads(hf, tmp_path / "first" / "release", tmp_path / "cache1", monkeypatch)
    out = tmp_path / "second" / "release"
    again = build(scenario, ctx, scenario_lake, out, categories=CATEGORIES, since_release=first.id)
    assert again.rows == 0 and again.removals == 0
    assert check_loads(hf, out, tmp_path / "cache2", monkeypatch) == {"posts": 0, "assistant_interactions": 0}
    assert pq.read_table(out / "removals.parquet").num_rows == 0
