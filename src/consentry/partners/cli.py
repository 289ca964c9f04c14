"""``consentry partner ...``: the partner registry, API keys and the overdue report."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from consentry.cli_support import cli_errors, console, open_database

if TYPE_CHECKING:
    from consentry.partners.schemas import PartnerDetail, PartnerWritten

partner_app = typer.Typer(
    help="Partners: registry, API keys, webhooks, overdue revocations.", no_args_is_help=True
)
key_app = typer.Typer(help="A partner's API keys.", no_args_is_help=True)
partner_app.add_typer(key_app, name="key")


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that also take comma-separated values."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _print_partner(partner: PartnerDetail) -> None:
    console.print(
        f"[bold]{partner.name}[/] (id {partner.id}, {partner.kind}, {partner.status}): purposes "
        f"{', '.join(partner.purposes)}; categories {', '.join(partner.categories)}; deletion deadline "
        f"{partner.deadline_hours} h",
        highlight=False,
    )
    webhook = partner.webhook_url or "none"
    secret = " (signing secret set)" if partner.webhook_secret_set else ""
    console.print(f"  webhook: {webhook}{secret}", highlight=False)
    counts = partner.revocations
    console.print(
        f"  revocations: {counts.pending} pending, {counts.overdue} overdue, "
        f"{counts.acknowledged} acknowledged",
        highlight=False,
    )
    for key in partner.keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        used = f"last used {key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
        label = f" {key.label}" if key.label else ""
        console.print(f"  key {key.id}: {key.prefix}…{label} ({state}, {used})", highlight=False)


def _print_written(partner: PartnerWritten, as_json: bool) -> None:
    if as_json:
        console.print_json(partner.model_dump_json())
        return
    _print_partner(partner)
    if partner.webhook_secret:
        console.print("  webhook signing secret (shown once; store it now):", highlight=False)
        console.print(partner.webhook_secret, highlight=False, soft_wrap=True)


def _written(name: str, generated: str | None) -> PartnerWritten:
    from consentry.partners import service
    from consentry.partners.schemas import PartnerWritten

    with open_database().read() as session:
        detail = service.partner_detail(session, service.get_partner(session, name))
    return PartnerWritten(**detail.model_dump(), webhook_secret=generated)


@partner_app.command("add")
@cli_errors
def partner_add(
    name: str,
    kind: Annotated[str, typer.Option(help="third_party or first_party.")] = "third_party",
    purpose: Annotated[
        list[str] | None,
        typer.Option("--purpose", help="Purpose it may receive (repeatable; default train-ai)."),
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option("--category", help="Category it may receive (repeatable; default posts)."),
    ] = None,
    deadline_hours: Annotated[
        int, typer.Option("--deadline-hours", help="Hours it has to delete revoked records.")
    ] = 72,
    webhook_url: Annotated[
        str | None, typer.Option("--webhook-url", help="http(s) endpoint for webhooks.")
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            "--webhook-secret", help="whsec_ + base64 of 24-64 bytes (default: generated, shown once)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Register a partner (a recipient of releases with a deletion deadline and a webhook)."""
    from consentry.partners import service

    with open_database().write() as session:
        partner, generated = service.add_partner(
            session,
            name=name,
            kind=kind,
            purposes=_split(purpose) or ["train-ai"],
            categories=_split(category) or ["posts"],
            deadline_hours=deadline_hours,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
        )
        name = partner.name
    _print_written(_written(name, generated), as_json)


@partner_app.command("update")
@cli_errors
def partner_update(
    name: str,
    deadline_hours: Annotated[
        int | None, typer.Option("--deadline-hours", help="New deletion deadline (for new revocations).")
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Option("--webhook-url", help="Set or change the webhook.")
    ] = None,
    webhook_secret: Annotated[
        str | None, typer.Option("--webhook-secret", help="Set the signing secret (whsec_...).")
    ] = None,
    rotate_secret: Annotated[
        bool, typer.Option("--rotate-secret", help="Generate a new signing secret (shown once).")
    ] = False,
    remove_webhook: Annotated[
        bool, typer.Option("--remove-webhook", help="Remove the webhook and its secret.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Change a partner's deletion deadline or webhook."""
    from consentry.partners import service

    with open_database().write() as session:
        _, generated = service.update_partner(
            session,
            name=name,
            deadline_hours=deadline_hours,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            rotate_secret=rotate_secret,
            remove_webhook=remove_webhook,
        )
    _print_written(_written(name, generated), as_json)


@partner_app.command("list")
@cli_errors
def partner_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List partners with their status, deadline, webhook and revocations."""
    from consentry.partners import service

    with open_database().read() as session:
        partners = [service.partner_detail(session, p) for p in service.list_partners(session)]
    if as_json:
        console.print_json(json.dumps([p.model_dump(mode="json") for p in partners]))
        return
    table = Table(title="partners", title_justify="left")
    table.add_column("name", no_wrap=True)
    for name in ("kind", "status", "deadline", "webhook"):
        table.add_column(name, overflow="fold")
    for name in ("keys", "pending", "overdue"):
        table.add_column(name, justify="right")
    for p in partners:
        table.add_row(
            p.name,
            p.kind,
            p.status if p.status == "active" else f"[red]{p.status}[/]",
            f"{p.deadline_hours} h",
            p.webhook_url or "-",
            str(sum(1 for k in p.keys if k.revoked_at is None)),
            str(p.revocations.pending),
            f"[red]{p.revocations.overdue}[/]" if p.revocations.overdue else "0",
        )
    console.print(table)


@partner_app.command("show")
@cli_errors
def partner_show(
    name: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Show a partner with its keys and revocations."""
    from consentry.partners import service

    with open_database().read() as session:
        partner = service.partner_detail(session, service.get_partner(session, name))
    if as_json:
        console.print_json(partner.model_dump_json())
        return
    _print_partner(partner)


@partner_app.command("suspend")
@cli_errors
def partner_suspend(name: str) -> None:
    """Suspend a partner: its keys get 403 on releases and it gets no new release."""
    from consentry.partners import service

    with open_database().write() as session:
        service.set_status(session, name=name, status="suspended")
    console.print(f"partner [bold]{name}[/] suspended", highlight=False)


@partner_app.command("resume")
@cli_errors
def partner_resume(name: str) -> None:
    """Lift a partner's suspension."""
    from consentry.partners import service

    with open_database().write() as session:
        service.set_status(session, name=name, status="active")
    console.print(f"partner [bold]{name}[/] active", highlight=False)


@key_app.command("create")
@cli_errors
def key_create(
    partner: str, label: Annotated[str, typer.Option(help="A note to recognise the key by.")] = ""
) -> None:
    """Issue an API key and print it (shown once; only its SHA-256 is stored)."""
    from consentry.partners import service

    with open_database().write() as session:
        _, key = service.create_key(session, partner=partner, label=label)
    console.print(key, highlight=False, soft_wrap=True)


@key_app.command("list")
@cli_errors
def key_list(partner: str) -> None:
    """List a partner's keys (prefixes only)."""
    from consentry.partners import service

    table = Table("id", "prefix", "label", "created", "last used", "revoked", title=f"keys of {partner}")
    with open_database().read() as session:
        for k in service.list_keys(session, partner=partner):
            table.add_row(
                str(k.id),
                k.prefix,
                k.label,
                f"{k.created_at:%Y-%m-%d %H:%M}",
                f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
                f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
            )
    console.print(table)


@key_app.command("revoke")
@cli_errors
def key_revoke(partner: str, key: Annotated[str, typer.Argument(help="Key id or prefix.")]) -> None:
    """Revoke one of a partner's keys; requests with it get 401 from now on."""
    from consentry.partners import service

    with open_database().write() as session:
        row = service.revoke_key(session, partner=partner, key=key)
        key_id, prefix = row.id, row.prefix
    console.print(f"key {key_id} ({prefix}…) of {partner} revoked", highlight=False)


@partner_app.command("overdue")
@cli_errors
def partner_overdue(
    partner: Annotated[str | None, typer.Option(help="Only this partner.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Revocations past their deadline without acknowledgement, per partner and release."""
    from consentry.partners import service

    with open_database().read() as session:
        report = service.overdue_report(session, partner=partner)
    if as_json:
        console.print_json(report.model_dump_json())
        return
    if not report.partners:
        console.print(f"no overdue revocations as of {report.as_of:%Y-%m-%d %H:%M} UTC", highlight=False)
        return
    table = Table(title=f"overdue revocations as of {report.as_of:%Y-%m-%d %H:%M} UTC", title_justify="left")
    table.add_column("partner", no_wrap=True)
    table.add_column("status")
    table.add_column("release", no_wrap=True, min_width=26)
    for name in ("revocations", "records"):
        table.add_column(name, justify="right")
    table.add_column("oldest deadline (UTC)", no_wrap=True)
    for p in report.partners:
        for index, r in enumerate(p.releases):
            table.add_row(
                p.partner if index == 0 else "",
                p.status if index == 0 else "",
                r.release,
                f"{r.revocations:,}",
                f"{r.records:,}",
                f"{r.oldest_deadline:%Y-%m-%d %H:%M}",
            )
        if len(p.releases) > 1:
            table.add_row(
                "",
                "",
                "[bold]total[/]",
                f"{p.revocations:,}",
                f"{p.records:,}",
                f"{p.oldest_deadline:%Y-%m-%d %H:%M}",
            )
    console.print(table)
