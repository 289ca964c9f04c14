"""``consentry org ...`` and ``consentry damages ...``: organisations, keys, networks and statements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from consentry.cli_support import cli_errors, console, open_database, parse_time
from consentry.defaults import DAMAGES_RATE_CENTS, DAMAGES_THRESHOLD_POSTS
from consentry.errors import InvalidInput

org_app = typer.Typer(
    help="Organisations reading content: modes, quotas, keys, networks.", no_args_is_help=True
)
damages_app = typer.Typer(help="Liquidated damages statements.", no_args_is_help=True)
app = typer.Typer(no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(damages_app, name="damages")

MODE_HELP = "allow | meter | throttle | block | pay"


def parse_usd(text: str | None, *, field: str) -> int | None:
    """``'0.0015'`` or ``'USD 0.0015'`` in micro-dollars."""
    if text is None:
        return None
    from consentry.metering.middleware import parse_price

    micro = parse_price(text)
    if micro is None:
        raise InvalidInput(f"{text!r} is not an amount in USD", field=field)
    return micro


def _print_org(out: object) -> None:
    from consentry.metering.schemas import OrganisationOut

    assert isinstance(out, OrganisationOut)
    quota = f"{out.quota:,}" if out.quota is not None else "-"
    price = f"USD {out.price_usd}/post" if out.price_usd else "-"
    console.print(
        f"[bold]{out.name}[/] (id {out.id}, {out.subject}): mode {out.mode}, quota {quota}, price {price}"
    )
    for key in out.keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        console.print(f"  key {key.id}: {key.hint}… {key.label} ({state})", highlight=False)
    for network in out.networks:
        console.print(f"  network {network.id}: {network.cidr}", highlight=False)
    for identity in out.bot_identities:
        pinned = " (pinned keys)" if identity.pinned else ""
        console.print(f"  bot identity {identity.id}: {identity.agent}{pinned}", highlight=False)


@org_app.command("add")
@cli_errors
def org_add(
    name: str,
    mode: Annotated[str, typer.Option(help=MODE_HELP)] = "meter",
    quota: Annotated[int | None, typer.Option(help="Posts per rolling 24 hours.")] = None,
    price_usd: Annotated[str | None, typer.Option("--price-usd", help="Price per post (pay mode).")] = None,
) -> None:
    """Register an organisation."""
    from consentry.metering import service

    price = parse_usd(price_usd, field="price_usd")
    with open_database().write() as session:
        organisation = service.create_organisation(
            session, name=name, mode=mode, quota=quota, price_micro_usd=price
        )
        out = service.organisation_out(session, organisation)
    _print_org(out)


@org_app.command("list")
@cli_errors
def org_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List organisations."""
    from consentry.metering import service

    with open_database().read() as session:
        rows = [service.organisation_out(session, org) for org in service.list_organisations(session)]
    if as_json:
        console.print_json(json.dumps([row.model_dump(mode="json") for row in rows]))
        return
    table = Table("id", "name", "mode", "quota", "price/post", "keys", "networks", title="organisations")
    for row in rows:
        table.add_row(
            str(row.id),
            row.name,
            row.mode,
            f"{row.quota:,}" if row.quota is not None else "-",
            f"USD {row.price_usd}" if row.price_usd else "-",
            str(sum(1 for key in row.keys if key.revoked_at is None)),
            ", ".join(network.cidr for network in row.networks) or "-",
        )
    console.print(table)


@org_app.command("show")
@cli_errors
def org_show(organisation: str) -> None:
    """Show an organisation (by id or name) with its keys and networks."""
    from consentry.metering import service

    with open_database().read() as session:
        out = service.organisation_out(session, service.get_organisation(session, ref=organisation))
    _print_org(out)


@org_app.command("set-mode")
@cli_errors
def org_set_mode(
    organisation: str,
    mode: Annotated[str, typer.Argument(help=MODE_HELP)],
    quota: Annotated[int | None, typer.Option(help="Posts per rolling 24 hours.")] = None,
    no_quota: Annotated[bool, typer.Option("--no-quota", help="Remove the quota.")] = False,
    price_usd: Annotated[str | None, typer.Option("--price-usd", help="Price per post (pay mode).")] = None,
) -> None:
    """Change an organisation's mode (and optionally its quota or price)."""
    from consentry.metering import service
    from consentry.metering.schemas import OrganisationUpdate

    if quota is not None and no_quota:
        raise InvalidInput("give --quota or --no-quota, not both", field="quota")
    changes: dict[str, object] = {"mode": mode}
    if quota is not None or no_quota:
        changes["quota"] = None if no_quota else quota
    if price_usd is not None:
        changes["price_micro_usd"] = parse_usd(price_usd, field="price_usd")
    from pydantic import ValidationError

    try:
        update = OrganisationUpdate.model_validate(changes)
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidInput(str(first["msg"]), field=".".join(str(p) for p in first["loc"])) from error
    with open_database().write() as session:
        updated = service.update_organisation(session, ref=organisation, changes=update)
        out = service.organisation_out(session, updated)
    _print_org(out)


@org_app.command("delete")
@cli_errors
def org_delete(organisation: str) -> None:
    """Delete an organisation that the access log does not name."""
    from consentry.metering import service

    with open_database().write() as session:
        service.delete_organisation(session, ref=organisation)
    console.print(f"deleted {organisation}")


@org_app.command("key-create")
@cli_errors
def org_key_create(
    organisation: str, label: Annotated[str, typer.Option(help="What the key is for.")] = ""
) -> None:
    """Issue an API key (printed once; only its SHA-256 is stored)."""
    from consentry.metering import service

    with open_database().write() as session:
        row, key = service.issue_key(session, ref=organisation, label=label)
        key_id = row.id
    console.print(f"key {key_id}: {key}", highlight=False, soft_wrap=True)
    console.print("Send it as 'Authorization: Bearer <key>' or 'X-Consentry-Key: <key>'.", highlight=False)


@org_app.command("key-revoke")
@cli_errors
def org_key_revoke(key_id: int) -> None:
    """Revoke an API key."""
    from consentry.metering import service

    with open_database().write() as session:
        service.revoke_key(session, key_id=key_id)
    console.print(f"key {key_id} revoked")


@org_app.command("cidr-add")
@cli_errors
def org_cidr_add(organisation: str, cidr: str) -> None:
    """Attribute a network (CIDR) to an organisation."""
    from consentry.metering import service

    with open_database().write() as session:
        row = service.add_network(session, ref=organisation, cidr=cidr)
        text, network_id = row.cidr, row.id
    console.print(f"network {network_id}: {text} -> {organisation}", highlight=False)


@org_app.command("cidr-remove")
@cli_errors
def org_cidr_remove(network_id: int) -> None:
    """Stop attributing a network."""
    from consentry.metering import service

    with open_database().write() as session:
        service.remove_network(session, network_id=network_id)
    console.print(f"network {network_id} removed")


def _read_jwks(path: Path) -> object:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidInput(f"cannot read a JWKS from {path}: {error}", field="jwks") from error


@org_app.command("bot-add")
@cli_errors
def org_bot_add(
    organisation: str,
    agent: Annotated[str, typer.Argument(help="The Signature-Agent origin, e.g. https://crawler.example")],
    directory_url: Annotated[
        str | None, typer.Option(help="Key directory (default: <agent>/.well-known/...directory).")
    ] = None,
    jwks: Annotated[Path | None, typer.Option(help="Pin these keys (a JWKS file); never fetched.")] = None,
) -> None:
    """Register a Web Bot Auth signature agent for an organisation."""
    from consentry.metering import identities

    keys = _read_jwks(jwks) if jwks is not None else None
    with open_database().write() as session:
        out = identities.identity_out(
            identities.add_identity(
                session, ref=organisation, agent=agent, directory_url=directory_url, jwks=keys
            )
        )
    _print_identity(out)


def _print_identity(out: object) -> None:
    from consentry.metering.schemas import BotIdentityOut

    assert isinstance(out, BotIdentityOut)
    keys = f"pinned keys {', '.join(out.pinned_key_ids)}" if out.pinned else f"keys from {out.directory_url}"
    console.print(
        f"bot identity {out.id}: {out.agent} -> organisation {out.organisation_id} ({keys})", highlight=False
    )


@org_app.command("bot-list")
@cli_errors
def org_bot_list() -> None:
    """List the registered signature agents."""
    from consentry.metering import identities

    with open_database().read() as session:
        rows = [identities.identity_out(row) for row in identities.list_identities(session)]
    for out in rows:
        _print_identity(out)
    if not rows:
        console.print("no bot identities")


@org_app.command("bot-pin")
@cli_errors
def org_bot_pin(
    identity_id: int,
    jwks: Annotated[
        Path | None, typer.Option(help="Pin these keys (a JWKS file); default: fetch the directory now.")
    ] = None,
) -> None:
    """Pin an agent's keys (offline): from a JWKS file, or fetched from its directory once, now."""
    from consentry.metering import identities
    from consentry.metering.webbotauth import KeyStore, public_jwk

    with open_database().read() as session:
        url = identities.get_identity(session, identity_id=identity_id).directory_url
    if jwks is not None:
        keys = _read_jwks(jwks)
    else:
        try:
            fetched, _ = KeyStore().fetch(url)
        except InvalidInput:
            raise
        except Exception as error:
            raise InvalidInput(
                f"the key directory {url} could not be fetched: {error}", field="jwks"
            ) from error
        keys = {"keys": [public_jwk(key) for key in fetched.values()]}
    with open_database().write() as session:
        out = identities.identity_out(identities.pin_identity(session, identity_id=identity_id, jwks=keys))
    _print_identity(out)


@org_app.command("bot-unpin")
@cli_errors
def org_bot_unpin(identity_id: int) -> None:
    """Fetch an agent's key directory again instead of its pinned keys."""
    from consentry.metering import identities

    with open_database().write() as session:
        out = identities.identity_out(identities.pin_identity(session, identity_id=identity_id, jwks=None))
    _print_identity(out)


@org_app.command("bot-remove")
@cli_errors
def org_bot_remove(identity_id: int) -> None:
    """Forget a signature agent (its logged traffic stays)."""
    from consentry.metering import identities

    with open_database().write() as session:
        identities.remove_identity(session, identity_id=identity_id)
    console.print(f"bot identity {identity_id} removed")


@org_app.command("crawlers")
@cli_errors
def org_crawlers(
    file: Annotated[Path | None, typer.Option(help="Check a replacement crawler file instead.")] = None,
) -> None:
    """List the known AI crawler user-agent tokens (or validate a crawler file)."""
    from consentry.metering.attribution import CrawlerCatalog

    catalog = CrawlerCatalog.load(file)
    table = Table("token", "operator", "purpose", title=f"{len(catalog)} AI crawlers")
    for crawler in catalog:
        table.add_row(crawler.token, crawler.operator, crawler.purpose)
    console.print(table)


@damages_app.command("statement")
@cli_errors
def damages_statement(
    organisation: Annotated[
        str, typer.Argument(help="Organisation id or name, a crawler:/net:/spoofed: subject, or unknown.")
    ],
    start: Annotated[str, typer.Option("--from", help="ISO 8601 start (UTC without offset).")],
    end: Annotated[str, typer.Option("--to", help="ISO 8601 end, exclusive; at most a year after --from.")],
    fmt: Annotated[str, typer.Option("--format", help="json | csv | html")] = "json",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    threshold: Annotated[
        int, typer.Option(help="Posts per 24 hours above which a window is a breach.")
    ] = DAMAGES_THRESHOLD_POSTS,
    rate_usd: Annotated[
        str, typer.Option("--rate-usd", help="USD per 1,000,000 posts.")
    ] = f"{DAMAGES_RATE_CENTS // 100}",
    rounding: Annotated[str, typer.Option(help="pro_rata | per_started_million")] = "pro_rata",
) -> None:
    """Breach windows, posts, amounts and per-hour evidence for one organisation and period."""
    from consentry.metering import damages, service

    if fmt not in ("json", "csv", "html"):
        raise InvalidInput("format must be json, csv or html", field="format")
    rate_micro = parse_usd(rate_usd, field="rate_usd")
    assert rate_micro is not None
    if rate_micro % 10_000:
        raise InvalidInput("the rate must be a whole number of cents", field="rate_usd")
    terms = damages.Terms(
        threshold=threshold, rate_cents=rate_micro // 10_000, rounding=cast("damages.Rounding", rounding)
    )
    with open_database().read() as session:
        result = service.statement(
            session,
            organisation=organisation,
            start=parse_time(start, field="from"),
            end=parse_time(end, field="to"),
            terms=terms,
        )
    text, _ = damages.render_statement(result, fmt)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        console.print(
            f"{len(result.windows)} breach window(s), USD {result.total_amount_usd}; written to {output}",
            highlight=False,
        )
    else:
        typer.echo(text, nl=not text.endswith("\n"))


@damages_app.command("top")
@cli_errors
def damages_top(
    limit: Annotated[int, typer.Option(help="How many subjects.")] = 20,
    at: Annotated[str | None, typer.Option(help="End of the 24 hours (default now).")] = None,
    threshold: Annotated[
        int, typer.Option(help="Damages threshold (posts per 24 hours).")
    ] = DAMAGES_THRESHOLD_POSTS,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Organisations (and unregistered readers) by posts in the last 24 hours, with projected liability."""
    from consentry.metering import damages, service

    terms = damages.Terms(threshold=threshold)
    with open_database().read() as session:
        result = service.top(
            session, now=parse_time(at, field="at") if at else None, limit=limit, terms=terms
        )
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    table = Table(
        "subject",
        "organisation",
        "mode",
        "posts (24 h)",
        "of threshold",
        "projected USD",
        title=f"24 hours to {result.as_of:%Y-%m-%d %H:%M} UTC",
    )
    for entry in result.entries:
        table.add_row(
            entry.subject,
            entry.organisation,
            entry.mode or "-",
            f"{entry.posts_24h:,}",
            f"{entry.share_of_threshold:.1%}",
            entry.projected_usd,
        )
    console.print(table)
