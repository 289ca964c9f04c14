"""``consentry recipient add|list`` and ``consentry dataset build|list|show|verify``.

Heavy libraries (pyarrow, duckdb, pyspark) are imported inside the commands.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from consentry.cli_support import cli_errors, console, fail, get_settings, open_database, parse_time
from consentry.errors import InvalidInput
from consentry.lake.cli import (
    CatalogNameOption,
    CatalogOption,
    LakeFormatOption,
    NamespaceOption,
    SnapshotAtOption,
    SnapshotOption,
    spec_from_options,
)

recipient_app = typer.Typer(help="Recipients of dataset releases.", no_args_is_help=True)
dataset_app = typer.Typer(
    help="Build, list, show and verify consent-enforced releases.", no_args_is_help=True
)


def _time(text: str | None, field: str) -> datetime | None:
    return parse_time(text, field=field) if text is not None else None


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _pairs(items: list[str] | None, field: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{item!r} is not KEY=VALUE", field=field)
        pairs[key.strip()] = value.strip()
    return pairs


@recipient_app.command("add")
@cli_errors
def recipient_add(
    name: str,
    kind: Annotated[str, typer.Option(help="first_party or third_party.")],
    purposes: Annotated[str, typer.Option(help="Comma-separated, e.g. train-ai,ai-input.")] = "train-ai",
    categories: Annotated[str, typer.Option(help="Comma-separated.")] = "posts",
) -> None:
    """Register a recipient (its pseudonymisation secret is generated and kept in the database)."""
    from consentry.datasets import service

    with open_database().write() as session:
        recipient = service.add_recipient(
            session, name=name, kind=kind, purposes=_split(purposes), categories=_split(categories)
        )
        console.print(
            f"recipient [bold]{recipient.name}[/] ({recipient.kind}): purposes "
            f"{', '.join(recipient.purposes)}; categories {', '.join(recipient.categories)}",
            highlight=False,
        )


@recipient_app.command("list")
@cli_errors
def recipient_list() -> None:
    """List recipients."""
    from consentry.datasets import service

    table = Table("name", "kind", "purposes", "categories", "created")
    with open_database().read() as session:
        for r in service.list_recipients(session):
            table.add_row(
                r.name, r.kind, ", ".join(r.purposes), ", ".join(r.categories), r.created_at.isoformat()
            )
    console.print(table)


LakeOption = Annotated[
    Path | None,
    typer.Option(help="The lake folder (accounts/, posts/, ...), or the root of its Delta tables."),
]
PurposeOption = Annotated[str, typer.Option(help="train-ai, ai-input, ai-train or search.")]
CategoriesOption = Annotated[str, typer.Option(help="Comma-separated: posts, assistant_interactions.")]
SinceOption = Annotated[str | None, typer.Option(help="Only records created at or after (ISO 8601).")]
UntilOption = Annotated[str | None, typer.Option(help="Only records created before (ISO 8601).")]
AsOfOption = Annotated[str | None, typer.Option("--as-of", help="Evaluate consent at (default now).")]
EngineOption = Annotated[str, typer.Option(help="duckdb (default) or spark.")]
SinceReleaseOption = Annotated[
    str | None, typer.Option("--since-release", help="Incremental on top of this release.")
]
ScrubOption = Annotated[
    bool | None,
    typer.Option("--scrub-pii/--no-scrub-pii", help="Replace e-mails and phones (default: third parties)."),
]
RetainOption = Annotated[
    list[str] | None, typer.Option("--retain", help="CATEGORY=DAYS retention window; repeatable.")
]
EngineOptionOption = Annotated[
    list[str] | None,
    typer.Option("--engine-option", help="KEY=VALUE (DuckDB memory_limit/threads, spark.*); repeatable."),
]
SparkMasterOption = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        help="Spark engine: local[N], spark://host:port, sc://host:port (Spark Connect); "
        "default CONSENTRY_SPARK_MASTER, else local[*].",
    ),
]


def _retention_days(retain: list[str] | None) -> dict[str, int]:
    days: dict[str, int] = {}
    for key, value in _pairs(retain, "retain").items():
        if not value.isdigit():
            raise InvalidInput(f"retention of {key} must be a whole number of days", field="retain")
        days[key] = int(value)
    return days


@contextmanager
def _progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback drawing one bar on the console, started at the first report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description:<36}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: list[TaskID] = []

    def progress(stage: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
            tasks.append(bar.add_task(stage, total=total))
        bar.update(tasks[0], description=stage, completed=done, total=total)

    try:
        yield progress
    finally:
        if tasks:
            bar.stop()


@dataset_app.command("build")
@cli_errors
def dataset_build(
    recipient: Annotated[str, typer.Option(help="Recipient name.")],
    out: Annotated[Path, typer.Option(help="New (or empty) folder for the release.")],
    lake: LakeOption = None,
    lake_format: LakeFormatOption = "parquet",
    catalog: CatalogOption = None,
    catalog_name: CatalogNameOption = None,
    namespace: NamespaceOption = None,
    snapshot: SnapshotOption = None,
    snapshot_at: SnapshotAtOption = None,
    purpose: PurposeOption = "train-ai",
    categories: CategoriesOption = "posts",
    since: SinceOption = None,
    until: UntilOption = None,
    as_of: AsOfOption = None,
    engine: EngineOption = "duckdb",
    since_release: SinceReleaseOption = None,
    scrub_pii: ScrubOption = None,
    retain: RetainOption = None,
    license: Annotated[str, typer.Option(help="License field of the dataset card.")] = "other",
    engine_option: EngineOptionOption = None,
    spark_master: SparkMasterOption = None,
) -> None:
    """Build and publish a consent-enforced release; prints what was included and excluded."""
    from consentry.consent.service import ConsentContext
    from consentry.datasets import service
    from consentry.datasets.eligibility import Retention

    retention = Retention(_retention_days(retain))
    settings = get_settings()
    source = spec_from_options(
        lake=lake,
        lake_format=lake_format,
        catalog=catalog,
        catalog_name=catalog_name,
        namespace=namespace,
        snapshot=snapshot,
        snapshot_at=snapshot_at,
    )
    if engine == "spark" and spark_master is None:
        spark_master = settings.spark_master
    ctx = ConsentContext.from_settings(settings)
    database = open_database(settings)
    with _progress_bar() as progress:
        release = service.build_release(
            database,
            ctx=ctx,
            recipient=recipient,
            purpose=purpose,
            categories=_split(categories),
            lake=source,
            out=out,
            as_of=_time(as_of, "as_of"),
            since=_time(since, "since"),
            until=_time(until, "until"),
            engine=engine,
            since_release=since_release,
            scrub_pii=scrub_pii,
            retention=retention,
            license=license,
            engine_options=_pairs(engine_option, "engine_option"),
            spark_master=spark_master,
            progress=progress,
            block_when_overdue=settings.block_releases_when_overdue,
        )
    manifest = service.read_manifest(release)
    console.print(f"[green]published[/] release [bold]{release.id}[/] at {release.path}", highlight=False)
    _print_summary(manifest)


def _print_summary(manifest: dict[str, Any]) -> None:
    from consentry.datasets.eligibility import REASONS

    rows: dict[str, int] = manifest["rows"]
    excluded: dict[str, dict[str, int]] = manifest["excluded"]
    table = Table("records", *rows, title=f"release {manifest['release_id']}", title_justify="left")
    table.add_row("[green]released[/]", *(f"{n:,}" for n in rows.values()))
    for reason in REASONS:
        table.add_row(f"excluded: {reason}", *(f"{excluded[c].get(reason, 0):,}" for c in rows))
    console.print(table)
    lake = manifest.get("lake") or {}
    if lake.get("format") in ("iceberg", "delta"):
        read = ", ".join(
            f"{name} {table.get('snapshot_id', table.get('version'))}"
            for name, table in lake.get("tables", {}).items()
        )
        console.print(f"{lake['format']} lake read at: {read}", highlight=False)
    incremental = manifest.get("incremental") or {}
    if incremental.get("since_release"):
        removals = incremental.get("removals", {})
        console.print(
            f"incremental on {incremental['since_release']}: removals "
            + ", ".join(f"{c} {n:,}" for c, n in removals.items()),
            highlight=False,
        )


@dataset_app.command("list")
@cli_errors
def dataset_list(
    recipient: Annotated[str | None, typer.Option(help="Only this recipient's releases.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 100,
) -> None:
    """List releases, newest first."""
    from consentry.datasets import queries

    settings = get_settings()
    rows = queries.release_rows(settings.resolved_database_url, recipient=recipient, limit=limit)
    if rows is None:  # no database yet, an older schema, or a database the drivers above do not reach
        with open_database(settings).read() as session:
            rows = queries.release_rows_in(session, recipient=recipient, limit=limit)
    table = Table(title="releases", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=26)
    for name in ("recipient", "purpose", "categories", "as of", "rows", "excluded", "status"):
        table.add_column(name, overflow="fold", justify="right" if name in ("rows", "excluded") else "left")
    for r in rows:
        table.add_row(
            r.id,
            r.recipient,
            r.purpose,
            ", ".join(r.categories),
            r.as_of.isoformat(),
            f"{r.rows:,}",
            f"{r.excluded:,}",
            r.status,
        )
    console.print(table)


@dataset_app.command("show")
@cli_errors
def dataset_show(
    release_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest as JSON.")] = False,
) -> None:
    """Show a release: where it is, what it holds, and what was excluded and why."""
    from consentry.datasets import service

    with open_database().read() as session:
        release = service.get_release(session, release_id)
        manifest = service.read_manifest(release)
        path, status = release.path, release.status
    if as_json:
        console.print_json(json.dumps(manifest))
        return
    console.print(
        f"[bold]{release_id}[/] ({status}) for {manifest['recipient']['name']} ({manifest['purpose']}), "
        f"consent as of {manifest['as_of']}, engine {manifest['engine']}\n{path}",
        highlight=False,
    )
    _print_summary(manifest)


@dataset_app.command("verify")
@cli_errors
def dataset_verify(
    release_id: str,
    log: Annotated[
        str | None,
        typer.Option(
            "--log", help="Check the cited checkpoint against the log at this URL, not the database."
        ),
    ] = None,
    log_key: Annotated[
        str | None,
        typer.Option(
            "--log-key", help="The log's verifier key (text, file or URL); default: the manifest's."
        ),
    ] = None,
    witness_key: Annotated[
        list[str] | None, typer.Option("--witness-key", help="A trusted witness's verifier key (repeatable).")
    ] = None,
    quorum: Annotated[
        int, typer.Option(help="How many trusted witnesses must cosign the log's checkpoint.")
    ] = 0,
) -> None:
    """Recompute checksums and row counts against the manifest, and prove the ledger checkpoint it cites
    consistent with the log's current one; exit 1 on any difference or a rewritten history."""
    from consentry.datasets import service
    from consentry.transparency.cli import make_trust
    from consentry.transparency.monitor import LogClient

    trust = make_trust(log_key, witness_key, quorum)
    remote = LogClient(log) if log is not None else None
    with open_database().read() as session:
        report = service.verify_release(session, release_id=release_id, log=remote, trust=trust)
    if not report.ok:
        for problem in report.problems:
            console.print(f"[red]✗[/] {problem}", highlight=False)
        raise fail(f"release {release_id} does not match its manifest ({len(report.problems)} problem(s))")
    rows = ", ".join(f"{c} {n:,}" for c, n in report.rows.items())
    console.print(f"[green]✓[/] {report.release_id}: {report.files} files match the manifest ({rows} rows)")
    if report.history is not None:
        console.print(f"[green]✓[/] ledger history: {report.history}", highlight=False, soft_wrap=True)
