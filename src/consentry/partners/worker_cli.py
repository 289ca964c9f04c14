"""``consentry worker`` (delivers the webhook outbox, runs queued jobs) and ``consentry webhook ...``
(log, retries, pings)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from consentry.cli_support import cli_errors, console, fail, open_database

if TYPE_CHECKING:
    from consentry.partners.models import Delivery
    from consentry.partners.outbox import LoggedMessage

webhook_app = typer.Typer(
    help="Webhooks: the delivery log, retries of dead messages, test pings.", no_args_is_help=True
)


def configure_logging(verbose: bool) -> None:
    """Worker log lines on stderr (every delivery with ``verbose``; httpx's own request lines stay quiet)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("consentry.worker")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    logging.getLogger("httpx").setLevel(logging.WARNING)


@cli_errors
def worker_command(
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due, run the queued jobs, then exit.")
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            max=1024,
            help="Requests in flight (default CONSENTRY_WORKER_CONCURRENCY).",
        ),
    ] = None,
    poll: Annotated[
        float, typer.Option("--poll", min=0.01, help="Seconds between looks at the outbox when idle.")
    ] = 1.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every delivery.")] = False,
) -> None:
    """Deliver queued webhooks (signed, retried with backoff), run queued jobs (dataset builds, account
    exports) and the retention schedule until SIGINT/SIGTERM, or once with --once.

    Workers may run side by side. A first SIGINT/SIGTERM lets requests in flight and running jobs finish;
    a second abandons them (jobs are queued again for another worker).
    """
    from consentry.config import get_settings
    from consentry.job_handlers import job_runner
    from consentry.partners.worker import Worker, periodic_tasks

    configure_logging(verbose)
    settings = get_settings()
    database = open_database(settings)
    worker = Worker(
        database,
        settings,
        concurrency=concurrency,
        poll_seconds=poll,
        periodic=periodic_tasks(settings),
        jobs=job_runner(database, settings, poll_seconds=poll),
    )
    try:
        if once:
            stats = worker.run_once()
            console.print(f"worker --once: {stats.summary()} in {stats.seconds:.1f} s", highlight=False)
        else:
            worker.run(handle_signals=True)
    finally:
        database.dispose()


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}" if at else "-"


def _message_json(logged: LoggedMessage) -> dict[str, object]:
    m = logged.message
    return {
        "message_id": m.message_id,
        "partner": logged.partner,
        "event_type": m.event_type,
        "status": m.status,
        "attempts": m.attempts,
        "created_at": m.created_at.isoformat(),
        "next_attempt_at": m.next_attempt_at.isoformat() if m.status == "pending" else None,
        "delivered_at": m.delivered_at.isoformat() if m.delivered_at else None,
        "last_error": m.last_error,
    }


def _attempt_json(d: Delivery) -> dict[str, object]:
    return {
        "attempt": d.attempt,
        "attempted_at": d.attempted_at.isoformat(),
        "status_code": d.status_code,
        "error": d.error,
        "duration_ms": d.duration_ms,
    }


STATUS_STYLE = {"pending": "yellow", "delivered": "green", "dead": "red"}


@webhook_app.command("log")
@cli_errors
def webhook_log(
    partner: Annotated[str | None, typer.Option(help="Only this partner's messages.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
    limit: Annotated[int, typer.Option(help="Newest messages shown.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The newest webhook messages with their state, attempts and last error."""
    from consentry.partners import outbox

    with open_database().read() as session:
        messages = outbox.list_messages(session, partner=partner, status=status, limit=limit)
        session.expunge_all()
    if as_json:
        console.print_json(json.dumps([_message_json(m) for m in messages]))
        return
    if not messages:
        console.print("no webhook messages", highlight=False)
        return
    for logged in messages:  # two lines per message: readable at any terminal width
        m = logged.message
        style = STATUS_STYLE.get(m.status, "")
        if m.status == "delivered":
            when = f"delivered {_when(m.delivered_at)}"
        elif m.status == "pending":
            when = f"next {_when(m.next_attempt_at)}"
        else:
            when = ""
        tries = f"{m.attempts} attempt" + ("" if m.attempts == 1 else "s")
        console.print(
            f"{m.message_id}  [{style}]{m.status:<9}[/] {m.event_type} to {logged.partner}, {tries}, "
            f"created {_when(m.created_at)}" + (f", {when}" if when else ""),
            highlight=False,
            soft_wrap=True,
        )
        if m.last_error:
            console.print(f"    [dim]{escape(m.last_error)}[/]", highlight=False, soft_wrap=True)


@webhook_app.command("show")
@cli_errors
def webhook_show(
    message_id: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """One message with its payload and every delivery attempt."""
    from consentry.partners import outbox

    with open_database().read() as session:
        logged = outbox.get_message(session, message_id)
        attempts = outbox.attempts_of(session, logged.message)
        session.expunge_all()
    if as_json:
        shown = _message_json(logged) | {
            "payload": logged.message.payload,
            "deliveries": [_attempt_json(d) for d in attempts],
        }
        console.print_json(json.dumps(shown))
        return
    m = logged.message
    console.print(
        f"[bold]{m.message_id}[/] {m.event_type} to {logged.partner}: {m.status}, {m.attempts} attempts"
        + (f", next at {_when(m.next_attempt_at)}" if m.status == "pending" else "")
        + (f", delivered at {_when(m.delivered_at)}" if m.delivered_at else ""),
        highlight=False,
    )
    console.print_json(json.dumps(m.payload))
    table = Table("attempt", "at", "HTTP", "ms", "error", title="delivery attempts", title_justify="left")
    for d in attempts:
        table.add_row(
            str(d.attempt),
            _when(d.attempted_at),
            str(d.status_code) if d.status_code is not None else "-",
            f"{d.duration_ms:,.0f}",
            escape(d.error or ""),
        )
    console.print(table)


@webhook_app.command("retry")
@cli_errors
def webhook_retry(
    message_id: Annotated[str | None, typer.Argument(help="A dead message (msg_...).")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead message instead.")] = False,
    partner: Annotated[str | None, typer.Option(help="With --all-dead: only this partner's.")] = None,
) -> None:
    """Put a dead message (or every dead one) back to pending, due now, with a fresh set of attempts."""
    from consentry.partners import outbox

    if (message_id is None) == (not all_dead) or (partner is not None and not all_dead):
        raise fail("give a MESSAGE_ID, or --all-dead (optionally with --partner)", 2)
    with open_database().write() as session:
        if message_id is not None:
            message = outbox.retry(session, message_id)
            console.print(
                f"{message.message_id} pending again; run 'consentry worker' to send it", highlight=False
            )
            return
        count = outbox.retry_dead(session, partner=partner)
    console.print(f"{count:,} dead messages pending again", highlight=False)


@webhook_app.command("send-test")
@cli_errors
def webhook_send_test(partner: str) -> None:
    """Queue a signed ping to a partner's webhook endpoint (the worker sends it)."""
    from consentry.partners import outbox

    with open_database().write() as session:
        message = outbox.send_test(session, partner=partner)
        message_id = message.message_id
    console.print(
        f"ping {message_id} queued for {partner}; 'consentry worker --once' sends it, "
        f"'consentry webhook show {message_id}' shows the outcome",
        highlight=False,
        soft_wrap=True,
    )
