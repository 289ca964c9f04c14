"""The ``consentry`` command: one group per domain; heavy imports happen inside commands."""

from __future__ import annotations

from typing import Annotated

import typer

import consentry.wiring  # noqa: F401  (the domains wired together: consent.events' subscribers)
from consentry.auth.cli import app as token_app
from consentry.cli_support import (
    claim_listen_address,
    cli_errors,
    console,
    open_database,
    runnable_command,
    shell_path,
)
from consentry.consent.cli import ledger_app, policy_app, receipt_app, settings_app
from consentry.datasets.cli import dataset_app, recipient_app
from consentry.exports.cli import export as export_account
from consentry.lake import cli as lake_cli
from consentry.links.cli import import_links, show_links
from consentry.metering.cli import damages_app, org_app
from consentry.partners.cli import partner_app
from consentry.partners.worker_cli import webhook_app, worker_command
from consentry.retention.cli import app as retention_app
from consentry.social.cli import app as account_app
from consentry.social.cli import platform_app
from consentry.transparency.cli import monitor, tlog_app, witness_app

app = typer.Typer(
    help="Consentry: decide whose content may flow into AI, enforce it, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
demo_app = typer.Typer(help="Run the demo service, or generate demo data (demo generate).")

app.add_typer(db_app, name="db")
account_app.command("export")(export_account)
account_app.command("link-import")(import_links)
account_app.command("links")(show_links)
app.add_typer(account_app, name="account")
app.add_typer(settings_app, name="settings")
app.add_typer(policy_app, name="policy")
app.add_typer(ledger_app, name="ledger")
app.add_typer(receipt_app, name="receipt")
app.add_typer(token_app, name="token")
app.add_typer(lake_cli.app, name="lake")
app.add_typer(platform_app, name="platform")
app.add_typer(recipient_app, name="recipient")
app.add_typer(dataset_app, name="dataset")
app.add_typer(partner_app, name="partner")
app.add_typer(webhook_app, name="webhook")
app.add_typer(org_app, name="org")
app.add_typer(damages_app, name="damages")
app.add_typer(retention_app, name="retention")
app.add_typer(demo_app, name="demo")
app.add_typer(witness_app, name="witness")
app.add_typer(tlog_app, name="transparency")
app.command("monitor")(monitor)


@db_app.command("upgrade")
@cli_errors
def db_upgrade() -> None:
    """Apply every pending migration."""
    from consentry.config import get_settings

    open_database()
    console.print(f"database at the newest schema: {get_settings().resolved_database_url}")


@db_app.command("check")
@cli_errors
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    from consentry.migrate import check

    check(open_database())
    console.print("models and migrations agree")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL recommended above 1).")] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Print a line per request (the meter's access log is kept either way).")
    ] = False,
) -> None:
    """Serve the HTTP API (migrations are applied on start)."""
    import uvicorn

    claim_listen_address(host, port, other_port_hint="consentry serve --port {port}")
    open_database()
    uvicorn.run(
        "consentry.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
    )


app.command("worker")(worker_command)


@demo_app.callback(invoke_without_command=True)
@cli_errors
def demo(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Seed and print, then exit.")] = False,
) -> None:
    """Seed the embedded database with demo accounts, print tokens and URLs, and serve."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from consentry.config import listen_url
    from consentry.demo import seed_demo

    if no_serve:
        base = listen_url(host, port)
    else:
        base = claim_listen_address(
            host, port, other_port_hint="make demo PORT={port}, or consentry demo --port {port}"
        )
    database = open_database()
    info = seed_demo(database)
    console.print(f"[bold]Consentry demo[/] — data in {info.home}")
    console.print(f"API docs:      {base}/docs")
    console.print(f"Settings page: {base}/settings   (sign in with an account token below)")
    console.print(f"Dashboard:     {base}/dashboard  (sign in with the admin token)")
    console.print(f"Receipt key:   {base}/.well-known/consentry/receipt-key")
    console.print(f"Admin token:   {info.admin_token}", highlight=False, soft_wrap=True)
    for handle, (account_id, token) in info.account_tokens.items():
        console.print(f"Account {account_id} @{handle}: {token}", highlight=False, soft_wrap=True)
    if info.seeded is not None:
        console.print(f"Seeded: {info.seeded.rows}", highlight=False, soft_wrap=True)
    first = next(iter(info.account_tokens.values()))[1]
    for line in info.try_commands(
        base, consentry=runnable_command(), lake=shell_path(info.home / "demo-lake")
    ):
        console.print(line, highlight=False, soft_wrap=True)
    console.print("\nTry, as an iOS client:", highlight=False)
    console.print(
        f"  curl -s -X PUT {base}/v1/me/settings -H 'Authorization: Bearer {first}' "
        "-H 'X-Consentry-Client: ios' -H 'Content-Type: application/json' "
        """-d '{"settings": {"assistant_training_posts": "deny"}}'""",
        highlight=False,
        soft_wrap=True,
    )
    if no_serve:
        return
    from consentry.config import get_settings
    from consentry.job_handlers import job_runner
    from consentry.partners.worker import periodic_tasks, start_in_thread
    from consentry.partners.worker_cli import configure_logging

    configure_logging(verbose=False)
    settings = get_settings()
    worker = start_in_thread(
        database, settings, periodic=periodic_tasks(settings), jobs=job_runner(database, settings)
    )
    console.print(
        "Worker:        delivering webhooks, running builds, exports and the retention schedule",
        highlight=False,
    )
    try:
        uvicorn.run("consentry.api:create_app", factory=True, host=host, port=port)
    finally:
        worker.stop(timeout=15)  # logs what it delivered


demo_app.command("generate")(lake_cli.generate)


def main() -> None:
    """Entry point of the ``consentry`` script."""
    app()


if __name__ == "__main__":
    main()
