"""``consentry settings|policy|ledger|receipt``: consent from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from consentry.cli_support import cli_errors, console, fail, get_settings, open_database, parse_time
from consentry.errors import InvalidInput

settings_app = typer.Typer(help="Show and change an account's settings.", no_args_is_help=True)
policy_app = typer.Typer(help="Add and list policy versions.", no_args_is_help=True)
ledger_app = typer.Typer(help="Verify and import the consent ledger.", no_args_is_help=True)
receipt_app = typer.Typer(help="Verify signed receipts offline.", no_args_is_help=True)


@settings_app.command("show")
@cli_errors
def settings_show(
    account: int,
    as_of: Annotated[str | None, typer.Option("--as-of", help="ISO 8601 time (default now).")] = None,
) -> None:
    """Show every setting of an account with its basis."""
    from consentry.consent import service

    at = parse_time(as_of, field="as_of") if as_of else datetime.now(UTC)
    ctx = service.ConsentContext.from_settings(get_settings())
    with open_database().read() as session:
        states = service.settings_view(session, account_id=account, ctx=ctx, at=at)
    table = Table(
        "setting", "value", "basis", "policy", "seq", title=f"account {account} at {at.isoformat()}"
    )
    for state in states:
        colour = "green" if state.value == "allow" else "red"
        table.add_row(
            state.key,
            f"[{colour}]{state.value}[/]",
            state.basis,
            str(state.policy_version or "-"),
            str(state.seq or "-"),
        )
    console.print(table)


@settings_app.command("set")
@cli_errors
def settings_set(
    account: int,
    changes: Annotated[list[str], typer.Argument(help="SETTING=allow|deny, one or more.")],
    client: Annotated[str, typer.Option(help="Client kind to record: web, ios, android, api.")] = "api",
    receipt_dir: Annotated[Path | None, typer.Option(help="Write each signed receipt here as JSON.")] = None,
    scope: Annotated[
        str, typer.Option(help="account, or linked: also every account with a confirmed link to it.")
    ] = "account",
) -> None:
    """Record explicit choices for an account (as an operator acting on the holder's request)."""
    from consentry.auth.service import check_client
    from consentry.consent import service

    parsed: dict[str, str] = {}
    for item in changes:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"{item!r} is not SETTING=allow|deny", field="changes")
        parsed[key] = value
    check_client(client)
    ctx = service.ConsentContext.from_settings(get_settings())
    with open_database().write() as session:
        receipts = service.change_settings(
            session, account_id=account, changes=parsed, client=client, ctx=ctx, scope=scope
        )
    for signed in receipts:
        chain = signed["receipt"]["chain"]
        event = signed["receipt"]["event"]
        console.print(
            f"seq {chain['seq']}: {event['setting']} = {event['value']}  subject {event['subject'][:8]}…  "
            f"hash {chain['hash'][:16]}…"
        )
        if receipt_dir:
            receipt_dir.mkdir(parents=True, exist_ok=True)
            (receipt_dir / f"receipt-{chain['seq']}.json").write_text(json.dumps(signed, indent=2), "utf-8")


def _read_policy(file: Path) -> Any:
    from pydantic import ValidationError

    from consentry.consent.schemas import PolicyIn

    try:
        body = PolicyIn.model_validate_json(file.read_bytes())
    except OSError as error:
        raise InvalidInput(f"cannot read {file}: {error}", field="file") from error
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidInput(first["msg"], field=".".join(str(p) for p in first["loc"])) from error
    if body.effective_at.tzinfo is None:
        body.effective_at = body.effective_at.replace(tzinfo=UTC)
    return body


def _print_impact(impact: Any) -> None:
    table = Table(
        "setting", "group", "change", "accounts", title=f"impact at {impact.effective_at.isoformat()}"
    )
    for row in impact.rows:
        table.add_row(row.setting, row.group, f"{row.before} -> {row.after}", f"{row.accounts:,}")
    console.print(table)
    console.print(
        f"{impact.changed_accounts:,} of {impact.accounts:,} accounts change; silent opt-ins: "
        f"{impact.silent_opt_ins:,}; changes defaults: {'yes' if impact.changes_defaults else 'no'}"
    )


@policy_app.command("impact")
@cli_errors
def policy_impact(
    file: Annotated[Path, typer.Argument(help="JSON: effective_at, applies_to, defaults, title, summary.")],
) -> None:
    """Show how many accounts' effective consent a candidate version would change, without adding it."""
    from consentry.consent import service

    body = _read_policy(file)
    ctx = service.ConsentContext.from_settings(get_settings())
    with open_database().read() as session:
        candidate = service.candidate_policy(
            session,
            effective_at=body.effective_at,
            applies_to=body.applies_to,
            defaults=body.defaults,
            title=body.title,
            ctx=ctx,
        )
        _print_impact(service.policy_impact(session, candidate=candidate, ctx=ctx))


@policy_app.command("add")
@cli_errors
def policy_add(
    file: Annotated[Path, typer.Argument(help="JSON: effective_at, applies_to, defaults, title, summary.")],
    allow_opt_in: Annotated[
        bool, typer.Option("--allow-opt-in", help="Knowingly switch existing accounts from deny to allow.")
    ] = False,
) -> None:
    """Add a policy version from a JSON file (its impact is measured and printed)."""
    from consentry.consent import service
    from consentry.consent.schemas import PolicyOut

    body = _read_policy(file)
    ctx = service.ConsentContext.from_settings(get_settings())
    with open_database().write() as session:
        row, impact = service.add_policy(
            session,
            effective_at=body.effective_at,
            applies_to=body.applies_to,
            defaults=body.defaults,
            title=body.title,
            summary=body.summary,
            created_by="cli",
            ctx=ctx,
            allow_opt_in=allow_opt_in or body.allow_opt_in,
        )
        console.print_json(PolicyOut.model_validate(row).model_dump_json())
    _print_impact(impact)


@policy_app.command("list")
@cli_errors
def policy_list() -> None:
    """List policy versions."""
    from consentry.consent import service

    table = Table("version", "effective at", "applies to", "title")
    with open_database().read() as session:
        for row in service.list_policies(session):
            table.add_row(str(row.version), row.effective_at.isoformat(), row.applies_to, row.title)
    console.print(table)


@ledger_app.command("verify")
@cli_errors
def ledger_verify(
    log_key: Annotated[
        str | None,
        typer.Option(
            "--log-key", help="The log's verifier key (text, file or URL); default: the data folder's."
        ),
    ] = None,
) -> None:
    """Recompute the hash chain, the transparency tree and the latest checkpoint from the events; exit 1
    naming the first bad seq (or the head, tree or checkpoint) if anything was tampered with."""
    from sqlalchemy import text

    from consentry.transparency.audit import audit
    from consentry.transparency.cli import read_key
    from consentry.transparency.note import parse_vkey
    from consentry.transparency.service import VKEY_FILE

    vkey_file = get_settings().home / VKEY_FILE
    if log_key is not None:
        verifier = parse_vkey(read_key(log_key, field="log_key"))
    elif vkey_file.exists():
        verifier = parse_vkey(vkey_file.read_text("utf-8").strip())
    else:
        verifier = None
    with open_database().read() as session:
        if session.get_bind().dialect.name == "postgresql":  # one snapshot for chain, tree and checkpoint
            session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        report = audit(session, log_key=verifier)
    if not report.ok:
        where = f"at seq {report.first_bad_seq}" if report.first_bad_seq is not None else "at the head"
        if report.chain.ok:
            where = f"at seq {report.first_bad_seq}" if report.first_bad_seq is not None else "in the log"
        raise fail(f"ledger broken {where}: {report.problem}")
    chain = report.chain
    console.print(
        f"[green]ledger intact[/]: {chain.events} events, head seq {chain.head_seq}, hash {chain.head_hash}; "
        + "; ".join(report.notes),
        soft_wrap=True,
    )


@receipt_app.command("verify")
@cli_errors
def receipt_verify(
    file: Annotated[Path, typer.Argument(help="A signed receipt (JSON).")],
    key: Annotated[
        Path | None,
        typer.Option(help="The operator's public key (JWK or JWK Set); default: the data folder's."),
    ] = None,
    proof: Annotated[
        Path | None, typer.Option(help="Its inclusion proof (tlog-proof text, or the proof endpoint's JSON).")
    ] = None,
    log_key: Annotated[
        str | None, typer.Option("--log-key", help="The log's verifier key (text, file or URL).")
    ] = None,
    witness_key: Annotated[
        list[str] | None, typer.Option("--witness-key", help="A trusted witness's verifier key (repeatable).")
    ] = None,
    quorum: Annotated[int, typer.Option(help="How many trusted witnesses must have cosigned.")] = 0,
) -> None:
    """Verify a receipt offline: its Ed25519 signature and chain hash, and with --proof its inclusion in
    a checkpoint signed by the log (and cosigned by --quorum of the --witness-key witnesses)."""
    from consentry.consent.receipts import PUBLIC_FILE, verify_receipt

    key_path = key or get_settings().home / PUBLIC_FILE
    try:
        signed = json.loads(file.read_text("utf-8"))
        jwk = json.loads(key_path.read_text("utf-8"))
        proof_text = proof.read_text("utf-8") if proof is not None else None
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidInput(f"cannot read: {error}", field="file") from error
    if isinstance(jwk, dict) and isinstance(jwk.get("keys"), list) and jwk["keys"]:
        kid = signed.get("signature", {}).get("kid") if isinstance(signed, dict) else None
        jwk = next((k for k in jwk["keys"] if k.get("kid") == kid), jwk["keys"][0])
    if proof_text is None:
        receipt = verify_receipt(signed, jwk)
        cosigned = ""
    else:
        from consentry.transparency.cli import make_trust
        from consentry.transparency.verify import verify_receipt_with_proof

        if log_key is None:
            raise InvalidInput("--proof needs the log's key (--log-key)", field="log_key")
        if proof_text.lstrip().startswith("{"):
            try:
                proof_text = str(json.loads(proof_text)["tlog_proof"])
            except (ValueError, KeyError, TypeError) as error:
                raise InvalidInput("the proof JSON has no tlog_proof", field="proof") from error
        checked = verify_receipt_with_proof(signed, jwk, proof_text, make_trust(log_key, witness_key, quorum))
        receipt = checked.receipt
        body = checked.checkpoint.checkpoint
        witnesses = ", ".join(checked.checkpoint.cosigned_by) or "no witness"
        cosigned = f"; included in checkpoint {body.origin} size {body.size} (cosigned by {witnesses})"
    event = receipt["event"]
    console.print(
        f"[green]valid[/]: seq {event['seq']} {event['setting']} = {event['value']} "
        f"recorded {event['recorded_at']} via {event['client']}{cosigned}",
        soft_wrap=True,
    )


@ledger_app.command("import")
@cli_errors
def ledger_import(
    lake: Annotated[Path, typer.Argument(help="A lake folder holding consent_events/ and accounts/.")],
    accounts_only: Annotated[
        bool,
        typer.Option(
            "--accounts-only",
            help="Only create the lake's accounts the database lacks (after an import that did not).",
        ),
    ] = False,
) -> None:
    """Append a lake's consent events to the ledger in one transaction (all or nothing), creating the
    lake's accounts the database lacks."""
    from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

    from consentry.consent import service
    from consentry.consent.importer import import_accounts, import_events

    database = open_database()
    if accounts_only:
        with database.write() as session:
            created = import_accounts(session, lake)
        console.print(f"[green]created[/] {created:,} accounts; no events were imported", soft_wrap=True)
        return
    ctx = service.ConsentContext.from_settings(get_settings())
    columns = (*Progress.get_default_columns()[:-1], MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar, database.write() as session:
        task = bar.add_task("importing consent events", total=None)
        report = import_events(
            session, lake, ctx=ctx, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
        bar.update(task, description="committing")
    console.print(
        f"[green]imported[/] {report.events:,} events ({report.new_subjects:,} new subjects, "
        f"{report.new_accounts:,} new accounts) in {report.seconds:.1f} s; head seq {report.head_seq}, "
        f"hash {report.head_hash}",
        soft_wrap=True,
    )


@ledger_app.command("partitions")
@cli_errors
def ledger_partitions(
    set_to: Annotated[
        int | None,
        typer.Option("--set", help="Give a new, empty ledger this many partitions (fixed from then on)."),
    ] = None,
) -> None:
    """Show the ledger's number of partitions, or set it on a ledger that holds no event yet."""
    from consentry.consent import ledger

    with open_database().write() as session:
        if set_to is not None:
            ledger.set_partitions(session, set_to)
        heads = ledger.heads(session)
    console.print(f"{len(heads)} partition(s)")
    for head in heads:
        console.print(f"  partition {head.partition}: {head.size:,} events, head seq {head.seq}")
