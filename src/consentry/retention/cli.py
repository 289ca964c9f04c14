"""``consentry retention ...``: the rules in force, legal holds, purge plans (dry runs) and purge runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from consentry.cli_support import cli_errors, console, err_console, open_database
from consentry.errors import InvalidInput

if TYPE_CHECKING:
    from consentry.retention.rules import Rules
    from consentry.retention.schemas import HoldOut, RuleOutcome

app = typer.Typer(help="Retention rules, legal holds, purge plans and purge runs.", no_args_is_help=True)
hold_app = typer.Typer(help="Legal holds: a held account's data is never purged.", no_args_is_help=True)
app.add_typer(hold_app, name="hold")

AtOption = Annotated[
    str | None, typer.Option("--at", help="Evaluate the windows at this ISO 8601 time (default now, UTC).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def parse_time(text: str | None, *, field: str = "at") -> datetime | None:
    """An ISO 8601 time or date (UTC when it has no offset); ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise InvalidInput(f"{text!r} is not an ISO 8601 time", field=field) from error
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _rules() -> Rules:
    """The rules in force; ``InvalidInput`` (exit 2) for a bad rules file."""
    from consentry.config import get_settings
    from consentry.retention.rules import load_rules

    return load_rules(get_settings().retention_file)


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{key} {value:,}" for key, value in values.items() if value) or "-"


def _examples(outcome: RuleOutcome) -> str:
    shown = [f"{key} {', '.join(map(str, ids))}" for key, ids in outcome.examples.items() if ids]
    return "; ".join(shown) or "-"


def _table(title: str, outcomes: list[RuleOutcome]) -> Table:
    table = Table("rule", "window", "cutoff", "removes", "held", "examples", title=title)
    for outcome in outcomes:
        removes = _counts(outcome.removed)
        if any(outcome.changed.values()):
            removes += f" (changes {_counts(outcome.changed)})"
        if outcome.kept:
            removes = "keeps " + _counts(outcome.kept)
        if outcome.note and removes == "-":
            removes = outcome.note
        table.add_row(
            outcome.rule,
            outcome.window or "-",
            f"{outcome.cutoff:%Y-%m-%d %H:%M}" if outcome.cutoff else "-",
            removes,
            _counts(outcome.held),
            _examples(outcome),
        )
    return table


@app.command("rules")
@cli_errors
def rules_command(as_json: JsonOption = False) -> None:
    """Show the retention rules in force (CONSENTRY_RETENTION_FILE, or the defaults)."""
    loaded = _rules()
    if as_json:
        console.print_json(json.dumps(loaded.describe()))
        return
    console.print(f"retention rules from {loaded.source}:")
    for rule, window in loaded.windows().items():
        console.print(f"  {rule:<24} {window}", highlight=False)


@app.command("plan")
@cli_errors
def plan_command(
    at: AtOption = None,
    lake: Annotated[
        Path | None, typer.Option("--lake", help="Plan over this lake folder instead of the database.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Dry run: what each rule would remove (counts, example ids, what legal holds keep)."""
    from consentry.retention import service

    when = parse_time(at)
    loaded = _rules()
    database = open_database()
    with database.read() as session:
        if lake is None:
            result = service.plan(session, rules=loaded, at=when)
        else:
            held = service.held_account_ids(session)
    if lake is not None:
        result = service.plan_lake(lake, rules=loaded, at=when, held=held)
    if as_json:
        console.print_json(result.model_dump_json())
        return
    where = f"lake {result.lake}" if result.lake else "the database"
    console.print(
        _table(f"retention plan over {where} at {result.at:%Y-%m-%d %H:%M:%S} UTC (dry run)", result.outcomes)
    )
    console.print(
        f"would remove {result.total:,} rows; {result.holds} account(s) on legal hold; "
        f"planned in {result.seconds:.2f} s",
        highlight=False,
        soft_wrap=True,
    )


@app.command("apply")
@cli_errors
def apply_command(
    at: AtOption = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the purge report to this JSON file.")
    ] = None,
    batch: Annotated[int, typer.Option(help="Rows per transaction.")] = 50_000,
    as_json: JsonOption = False,
) -> None:
    """Purge what the rules say, revoke released purged records, and record the run."""
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    from consentry.retention import service

    when = parse_time(at)
    loaded = _rules()
    database = open_database()
    tasks: dict[str, TaskID] = {}
    with Progress(
        SpinnerColumn(finished_text="[green]done[/]"),
        TextColumn("{task.description:<24}"),
        TextColumn("{task.completed:>12,.0f} rows"),
        TimeElapsedColumn(),
        console=err_console,
        transient=as_json,
    ) as progress:

        def step(rule: str, removed: int) -> None:
            if rule not in tasks:
                tasks[rule] = progress.add_task(rule, total=None)
            progress.update(tasks[rule], completed=removed)

        result = service.apply(database, rules=loaded, at=when, batch=batch, progress=step)
        for outcome in result.outcomes:  # every rule that ran is done
            if outcome.rule in tasks:
                progress.update(tasks[outcome.rule], total=outcome.total, completed=outcome.total)
    text = result.model_dump_json(indent=2)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text + "\n", encoding="utf-8")
    if as_json:
        console.print_json(text)
        return
    console.print(
        _table(f"retention run {result.run_id} at {result.at:%Y-%m-%d %H:%M:%S} UTC", result.outcomes)
    )
    rate = f", {result.rows_per_second:,.0f} rows/s" if result.rows_per_second else ""
    console.print(
        f"removed {result.rows_removed:,} rows in {result.seconds:.2f} s{rate}; "
        f"{result.revocations} revocation(s) created",
        highlight=False,
        soft_wrap=True,
    )
    if report is not None:
        console.print(f"report written to {report}", highlight=False, soft_wrap=True)


@app.command("runs")
@cli_errors
def runs_command(
    limit: Annotated[int, typer.Option(help="How many runs.")] = 20, as_json: JsonOption = False
) -> None:
    """The latest retention runs."""
    from consentry.retention import service
    from consentry.retention.schemas import RunOut

    with open_database().read() as session:
        rows = [RunOut.model_validate(run) for run in service.list_runs(session, limit=limit)]
    if as_json:
        console.print_json(json.dumps([row.model_dump(mode="json") for row in rows]))
        return
    table = Table("id", "at", "trigger", "status", "rows removed", "revocations", title="retention runs")
    for row in rows:
        table.add_row(
            str(row.id), f"{row.at:%Y-%m-%d %H:%M}", row.trigger, row.status, f"{row.rows_removed:,}",
            str(row.revocations),
        )  # fmt: skip
    console.print(table)


def _print_hold(hold: HoldOut) -> None:
    state = f"released {hold.released_at:%Y-%m-%d %H:%M}" if hold.released_at else "active"
    console.print(
        f"account {hold.account_id}: legal hold since {hold.created_at:%Y-%m-%d %H:%M} ({state}): "
        f"{hold.reason}",
        highlight=False,
    )


@hold_app.command("add")
@cli_errors
def hold_add(
    account: Annotated[int, typer.Argument(help="Account id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (case, request reference).")],
    by: Annotated[str, typer.Option("--by", help="Who placed the hold.")] = "cli",
) -> None:
    """Put an account on legal hold: no retention rule removes its data."""
    from consentry.retention import service
    from consentry.retention.schemas import HoldOut

    with open_database().write() as session:
        hold = HoldOut.model_validate(service.add_hold(session, account_id=account, reason=reason, by=by))
    _print_hold(hold)


@hold_app.command("release")
@cli_errors
def hold_release(
    account: Annotated[int, typer.Argument(help="Account id.")],
    by: Annotated[str, typer.Option("--by", help="Who released the hold.")] = "cli",
) -> None:
    """Release an account's legal hold."""
    from consentry.retention import service
    from consentry.retention.schemas import HoldOut

    with open_database().write() as session:
        hold = HoldOut.model_validate(service.release_hold(session, account_id=account, by=by))
    _print_hold(hold)


@hold_app.command("list")
@cli_errors
def hold_list(
    include_released: Annotated[bool, typer.Option("--all", help="Include released holds.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List legal holds."""
    from consentry.retention import service
    from consentry.retention.schemas import HoldOut

    with open_database().read() as session:
        rows = [
            HoldOut.model_validate(h) for h in service.list_holds(session, include_released=include_released)
        ]
    if as_json:
        console.print_json(json.dumps([row.model_dump(mode="json") for row in rows]))
        return
    if not rows:
        console.print("no legal holds")
    for row in rows:
        _print_hold(row)
