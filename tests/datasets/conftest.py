"""Fixtures of the dataset tests: the scenario lake, a generated lake, a loaded ledger, recipients."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentry.consent.importer import import_events
from consentry.consent.service import ConsentContext
from consentry.datasets import service
from consentry.datasets.eligibility import SPECS
from consentry.datasets.models import Release
from consentry.db import Database
from consentry.lake.generate import generate_lake
from tests.datasets.scenario import AS_OF, write_scenario

CATEGORIES = ["posts", "assistant_interactions"]


@pytest.fixture(scope="session")
def scenario_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made lake of ``tests/datasets/scenario.py`` (read-only)."""
    return write_scenario(tmp_path_factory.mktemp("scenario") / "lake")


@pytest.fixture(scope="session")
def generated_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated lake (read-only)."""
    lake = tmp_path_factory.mktemp("generated") / "lake"
    generate_lake(lake, accounts=1500, posts=15000, seed=11)
    return lake


def load(database: Database, ctx: ConsentContext, lake: Path) -> Database:
    """Import the lake's consent events into the ledger and register the test recipients."""
    with database.write() as session:
        import_events(session, lake, ctx=ctx)
        service.add_recipient(
            session,
            name="assistant",
            kind="first_party",
            purposes=["train-ai", "ai-input"],
            categories=CATEGORIES,
        )
        service.add_recipient(
            session, name="partner", kind="third_party", purposes=["train-ai"], categories=CATEGORIES
        )
        service.add_recipient(
            session, name="other-partner", kind="third_party", purposes=["train-ai"], categories=["posts"]
        )
    return database


@pytest.fixture
def scenario(database: Database, ctx: ConsentContext, scenario_lake: Path) -> Database:
    """The database with the scenario's ledger and the recipients."""
    return load(database, ctx, scenario_lake)


def build(
    database: Database,
    ctx: ConsentContext,
    lake: Path,
    out: Path,
    *,
    recipient: str = "assistant",
    categories: Sequence[str] = ("posts",),
    **options: Any,
) -> Release:
    """Build a ``train-ai`` release at the scenario's ``AS_OF`` unless told otherwise."""
    options.setdefault("as_of", AS_OF)
    return service.build_release(
        database,
        ctx=ctx,
        recipient=recipient,
        purpose=options.pop("purpose", "train-ai"),
        categories=list(categories),
        lake=lake,
        out=out,
        **options,
    )


def released(out: Path, category: str) -> pa.Table:
    """Every row of one category of a release, sorted by id, in the release schema."""
    table = pq.read_table(str(out / "data" / category)).replace_schema_metadata(None)
    return table.cast(SPECS[category].schema).sort_by("id")


def staging_folders(parent: Path) -> list[Path]:
    """Build staging folders left in ``parent``."""
    return sorted(parent.glob(".consentry-build-*"))
