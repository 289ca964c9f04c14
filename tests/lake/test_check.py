"""The validator passes a generated lake and reports each kind of violation, exactly and with examples."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from consentry.errors import NotFound
from consentry.lake.check import LakeReport, check_lake
from consentry.lake.cli import app
from consentry.lake.generate import generate_lake

Transform = Callable[[pa.Table], pa.Table]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("check") / "lake"
    generate_lake(path, accounts=1500, posts=8000, seed=11)
    return path


def copy_with(lake: Path, target: Path, folder: str, transform: Transform) -> Path:
    """A copy of ``lake`` whose ``folder`` is rewritten, as one file, through ``transform``."""
    shutil.copytree(lake, target)
    table = pq.read_table(target / folder)
    shutil.rmtree(target / folder)
    (target / folder).mkdir()
    pq.write_table(transform(table), target / folder / "part-0.parquet")
    return target


def found(report: LakeReport) -> list[tuple[str, str | None, str]]:
    return [(v.folder, v.column, v.kind) for v in report.violations]


def replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def set_row(table: pa.Table, name: str, row: int, value: object) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    return replace(table, name, pa.array(values, type=table.schema.field(name).type))


def test_generated_lake_satisfies_the_contract(lake: Path) -> None:
    report = check_lake(lake)
    assert report.ok, report.violations
    assert report.violations == ()
    assert report.rows["accounts"] == 1500
    assert report.rows["posts"] == 8000
    assert set(report.rows) == {
        "accounts",
        "posts",
        "assistant_interactions",
        "blocks",
        "follows",
        "consent_events",
    }


def test_wrong_column_type_is_the_only_violation(lake: Path, tmp_path: Path) -> None:
    broken = copy_with(
        lake,
        tmp_path / "lake",
        "posts",
        lambda t: replace(t, "author_id", pc.cast(t["author_id"], pa.string())),
    )
    report = check_lake(broken)
    assert found(report) == [("posts", "author_id", "wrong_type")]
    (violation,) = report.violations
    assert violation.count == 1
    assert violation.examples == ("posts/part-0.parquet: string",)
    assert "int64" in violation.message


def test_timestamp_without_microseconds_in_utc_is_a_wrong_type(lake: Path, tmp_path: Path) -> None:
    def to_naive_nanoseconds(table: pa.Table) -> pa.Table:
        return replace(table, "created_at", pc.cast(table["created_at"], pa.timestamp("ns", tz="UTC")))

    report = check_lake(copy_with(lake, tmp_path / "lake", "accounts", to_naive_nanoseconds))
    assert found(report) == [("accounts", "created_at", "wrong_type")]
    assert report.violations[0].examples == ("accounts/part-0.parquet: timestamp[ns, UTC]",)


def test_missing_column_is_the_only_violation(lake: Path, tmp_path: Path) -> None:
    report = check_lake(copy_with(lake, tmp_path / "lake", "posts", lambda t: t.drop_columns(["media"])))
    assert found(report) == [("posts", "media", "missing_column")]
    assert report.violations[0].examples == ("posts/part-0.parquet",)


def test_duplicate_id_is_the_only_violation(lake: Path, tmp_path: Path) -> None:
    report = check_lake(
        copy_with(lake, tmp_path / "lake", "posts", lambda t: pa.concat_tables([t, t.slice(41, 1)]))
    )
    assert found(report) == [("posts", "post_id", "duplicate_key")]
    (violation,) = report.violations
    assert violation.count == 1
    assert violation.examples == ("42",)


def test_duplicate_pairs_are_reported(lake: Path, tmp_path: Path) -> None:
    report = check_lake(
        copy_with(lake, tmp_path / "lake", "follows", lambda t: pa.concat_tables([t, t.slice(0, 3)]))
    )
    assert found(report) == [("follows", "follower_id, followee_id", "duplicate_key")]
    assert report.violations[0].count == 3
    assert report.violations[0].examples[0].startswith("(")


def test_dangling_author_is_the_only_violation(lake: Path, tmp_path: Path) -> None:
    report = check_lake(
        copy_with(lake, tmp_path / "lake", "posts", lambda t: set_row(t, "author_id", 5, 10**12))
    )
    assert found(report) == [("posts", "author_id", "dangling_reference")]
    (violation,) = report.violations
    assert violation.count == 1
    assert violation.examples == ("1000000000000",)


def test_dangling_reply_and_references_from_every_folder(lake: Path, tmp_path: Path) -> None:
    shutil.copytree(lake, tmp_path / "lake")
    broken = tmp_path / "lake"
    for folder, column in (
        ("assistant_interactions", "account_id"),
        ("blocks", "blocked_id"),
        ("follows", "follower_id"),
        ("consent_events", "account_id"),
    ):
        shutil.rmtree(broken / folder)
        copy_with(lake, tmp_path / folder, folder, lambda t, c=column: set_row(t, c, 0, -7))  # type: ignore[misc]
        shutil.move(tmp_path / folder / folder, broken / folder)
    copy_with(lake, tmp_path / "posts", "posts", lambda t: set_row(t, "reply_to", 0, 99_999_999))
    shutil.rmtree(broken / "posts")
    shutil.move(tmp_path / "posts" / "posts", broken / "posts")
    report = check_lake(broken)
    assert sorted(found(report)) == sorted(
        [
            ("posts", "reply_to", "dangling_reference"),
            ("assistant_interactions", "account_id", "dangling_reference"),
            ("blocks", "blocked_id", "dangling_reference"),
            ("follows", "follower_id", "dangling_reference"),
            ("consent_events", "account_id", "dangling_reference"),
        ]
    )
    assert all(v.count == 1 for v in report.violations)


def test_nulls_and_values_outside_the_allowed_set(lake: Path, tmp_path: Path) -> None:
    def damage(table: pa.Table) -> pa.Table:
        table = set_row(table, "status", 3, "Active")
        table = set_row(table, "status", 4, "Active")
        table = set_row(table, "country", 5, "UK")
        return set_row(table, "handle", 6, None)

    report = check_lake(copy_with(lake, tmp_path / "lake", "accounts", damage))
    assert sorted(found(report)) == [
        ("accounts", "country", "invalid_value"),
        ("accounts", "handle", "null_value"),
        ("accounts", "status", "invalid_value"),
    ]
    by_column = {v.column: v for v in report.violations}
    assert by_column["status"].count == 2
    assert by_column["status"].examples == ("'Active'",)
    assert by_column["country"].examples == ("'UK'",)
    assert by_column["handle"].examples == ("account_id=7",)


def test_several_violations_are_all_reported(lake: Path, tmp_path: Path) -> None:
    broken = copy_with(
        lake, tmp_path / "lake", "posts", lambda t: set_row(t.drop_columns(["text"]), "author_id", 0, -1)
    )
    shutil.rmtree(broken / "blocks")
    report = check_lake(broken)
    assert sorted(found(report)) == [
        ("blocks", None, "missing_folder"),
        ("posts", "author_id", "dangling_reference"),
        ("posts", "text", "missing_column"),
    ]
    assert not report.ok


def test_any_number_of_files_and_equivalent_string_types(lake: Path, tmp_path: Path) -> None:
    shutil.copytree(lake, tmp_path / "lake")
    posts = pq.read_table(tmp_path / "lake" / "posts")
    shutil.rmtree(tmp_path / "lake" / "posts")
    nested = tmp_path / "lake" / "posts" / "year=2026"
    nested.mkdir(parents=True)
    pq.write_table(posts.slice(0, 3000), tmp_path / "lake" / "posts" / "a.parquet")
    as_large = posts.slice(3000).cast(
        pa.schema([f.with_type(pa.large_string()) if f.type == pa.string() else f for f in posts.schema])
    )
    pq.write_table(as_large.append_column("extra", pa.array([1] * as_large.num_rows)), nested / "b.parquet")
    (tmp_path / "lake" / "posts" / "_SUCCESS").write_text("")
    report = check_lake(tmp_path / "lake")
    assert report.ok, report.violations
    assert report.files["posts"] == 2
    assert report.rows["posts"] == 8000


def test_unreadable_file_and_empty_folder(lake: Path, tmp_path: Path) -> None:
    shutil.copytree(lake, tmp_path / "lake")
    (tmp_path / "lake" / "posts" / "broken.parquet").write_bytes(b"not parquet at all")
    shutil.rmtree(tmp_path / "lake" / "follows")
    (tmp_path / "lake" / "follows").mkdir()
    report = check_lake(tmp_path / "lake")
    assert found(report) == [("posts", None, "unreadable"), ("follows", None, "no_files")]
    assert report.violations[0].examples == ("posts/broken.parquet",)


def test_broken_key_column_skips_the_checks_that_depend_on_it(lake: Path, tmp_path: Path) -> None:
    def ids_as_text(table: pa.Table) -> pa.Table:
        return replace(table, "account_id", pc.cast(table["account_id"], pa.string()))

    report = check_lake(copy_with(lake, tmp_path / "lake", "accounts", ids_as_text))
    assert found(report) == [("accounts", "account_id", "wrong_type")]


def test_other_setting_catalogs_can_be_accepted(lake: Path, tmp_path: Path) -> None:
    broken = copy_with(
        lake, tmp_path / "lake", "consent_events", lambda t: set_row(t, "setting", 0, "ads_personalisation")
    )
    assert found(check_lake(broken)) == [("consent_events", "setting", "invalid_value")]
    from consentry.lake.schema import SETTING_KEYS

    assert check_lake(broken, settings=[*SETTING_KEYS, "ads_personalisation"]).ok


def test_missing_lake_folder_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as caught:
        check_lake(tmp_path / "nowhere")
    assert caught.value.field == "path"


def test_lake_with_no_folders_reports_each_missing_folder(tmp_path: Path) -> None:
    report = check_lake(tmp_path)
    assert [v.kind for v in report.violations] == ["missing_folder"] * 6


# --- CLI ---------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_check_clean_lake_exits_0(lake: Path) -> None:
    result = runner.invoke(app, ["check", str(lake)])
    assert result.exit_code == 0, result.output
    assert "satisfies the data contract" in " ".join(result.output.split())


def test_cli_check_broken_lake_exits_1_and_lists_violations(lake: Path, tmp_path: Path) -> None:
    broken = copy_with(lake, tmp_path / "lake", "posts", lambda t: set_row(t, "author_id", 5, 10**12))
    result = runner.invoke(app, ["check", str(broken)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "dangling reference" in result.output
    assert "1000000000000" in result.output
    assert "1 violation" in result.output


def test_cli_check_missing_folder_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "no lake folder" in result.output
