"""``consentry monitor``, ``consentry witness`` and ``consentry transparency``: the log from the
command line. The monitor and the witness never open the operator's database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from consentry.cli_support import cli_errors, console, err_console, fail, get_settings, open_database
from consentry.errors import InvalidInput

witness_app = typer.Typer(help="Run a witness that cosigns consistent checkpoints.", no_args_is_help=True)
tlog_app = typer.Typer(help="The transparency log: checkpoints and keys.", no_args_is_help=True)


def read_key(value: str, *, field: str) -> str:
    """A verifier key given inline, as a file, or as an http(s) URL."""
    import httpx

    if value.startswith(("http://", "https://")):
        try:
            return httpx.get(value, timeout=30).raise_for_status().text.strip()
        except httpx.HTTPError as error:
            raise InvalidInput(f"cannot fetch {value}: {error}", field=field) from error
    path = Path(value)
    if "+" not in value and path.exists():
        return path.read_text("utf-8").strip()
    return value.strip()


def make_trust(log_key: str | None, witness_keys: list[str] | None, quorum: int) -> Any:
    """A ``Trust`` from command-line keys (``None`` without a log key)."""
    from consentry.transparency.note import parse_vkey
    from consentry.transparency.verify import Trust

    if log_key is None:
        if witness_keys or quorum:
            raise InvalidInput("--witness-key and --quorum need --log-key", field="log_key")
        return None
    witnesses = tuple(parse_vkey(read_key(k, field="witness_key")) for k in witness_keys or [])
    return Trust(parse_vkey(read_key(log_key, field="log_key")), witnesses, quorum)


LogKey = Annotated[
    str | None, typer.Option("--log-key", help="The log's verifier key (text, file or URL); default: pinned.")
]
WitnessKeys = Annotated[
    list[str] | None, typer.Option("--witness-key", help="A trusted witness's verifier key (repeatable).")
]
Quorum = Annotated[int, typer.Option(help="How many trusted witnesses must have cosigned.")]


@cli_errors
def monitor(
    url: Annotated[str, typer.Argument(help="The operator's base URL.")],
    state: Annotated[Path | None, typer.Option(help="Remembers the last accepted checkpoint.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Recompute the whole tree from the entries.")] = False,
    receipt: Annotated[Path | None, typer.Option(help="A saved receipt to find in the current tree.")] = None,
    receipt_key: Annotated[Path | None, typer.Option(help="The receipt key (JWK or JWK Set file).")] = None,
    log_key: LogKey = None,
    witness_key: WitnessKeys = None,
    quorum: Quorum = 0,
    connections: Annotated[
        int, typer.Option(min=1, max=64, help="Entry bundles fetched at once by --full.")
    ] = 8,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display for --full.")] = False,
) -> None:
    """Check the log at URL: signature, consistency with the last accepted checkpoint, and optionally
    the whole tree and a receipt. Exits 1 naming a fork, rollback, truncation or bad signature."""
    from consentry.transparency.monitor import LogClient, MonitorAlarm, run

    trust = make_trust(log_key, witness_key, quorum)
    signed = jwk = None
    try:
        if receipt is not None:
            signed = json.loads(receipt.read_text("utf-8"))
        if receipt_key is not None:
            jwk = _jwk(json.loads(receipt_key.read_text("utf-8")), signed)
    except (OSError, ValueError) as error:
        raise InvalidInput(f"cannot read: {error}", field="receipt") from error
    show = full and not quiet and console.is_terminal and err_console.is_terminal
    try:
        with _progress(show) as progress:
            report = run(
                LogClient(url, connections=connections),
                trust=trust,
                state=state,
                full=full,
                receipt=signed,
                receipt_key=jwk,
                workers=connections,
                progress=progress,
            )
    except MonitorAlarm as alarm:
        raise fail(f"{alarm.kind.upper()}: {alarm.detail}") from alarm
    cosigned = f", cosigned by {', '.join(report.cosigned_by)}" if report.cosigned_by else ""
    console.print(
        f"[green]ok[/]: {report.origin} at size {report.size}, root {report.root}{cosigned}", soft_wrap=True
    )
    for note in report.notes:
        console.print(f"  {note}")


@contextmanager
def _progress(show: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress display on stderr for a full check (``None``: nothing shown)."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:

        def advance(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        yield advance


def _jwk(data: Any, signed: Any) -> Any:
    if isinstance(data, dict) and isinstance(data.get("keys"), list) and data["keys"]:
        kid = signed.get("signature", {}).get("kid") if isinstance(signed, dict) else None
        return next((k for k in data["keys"] if k.get("kid") == kid), data["keys"][0])
    return data


@witness_app.command("serve")
@cli_errors
def witness_serve(
    state: Annotated[Path, typer.Option(help="The witness's own SQLite state file.")],
    name: Annotated[str, typer.Option(help="The witness's key name (a schema-less URL).")],
    log_key: Annotated[list[str], typer.Option("--log-key", help="A log to witness (its verifier key).")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8100,
) -> None:
    """Serve ``POST /add-checkpoint``: cosign a checkpoint only if consistent with the last one."""
    import uvicorn

    from consentry.transparency.witness import create_app

    witness = _open_witness(state, name, log_key)
    console.print(f"witness {name}: key {witness.signer.vkey}", soft_wrap=True)
    uvicorn.run(create_app(witness), host=host, port=port, log_level="warning")


@witness_app.command("key")
@cli_errors
def witness_key_command(
    state: Annotated[Path, typer.Option(help="The witness's own SQLite state file.")],
    name: Annotated[str, typer.Option(help="The witness's key name (a schema-less URL).")],
) -> None:
    """Print the witness's verifier key (created beside the state file on first use)."""
    console.print(_signer(state, name).vkey, soft_wrap=True)


def _signer(state: Path, name: str) -> Any:
    from consentry.transparency.note import COSIGNATURE_V1
    from consentry.transparency.service import load_or_create_key

    return load_or_create_key(
        state.parent,
        name,
        file=state.name + ".key.pem",
        vkey_file=state.name + ".vkey",
        kind=COSIGNATURE_V1,
    )


def _open_witness(state: Path, name: str, log_keys: list[str]) -> Any:
    from consentry.transparency.note import parse_vkey
    from consentry.transparency.witness import Witness

    logs = [parse_vkey(read_key(k, field="log_key")) for k in log_keys]
    return Witness(_signer(state, name), logs, state)


@tlog_app.command("checkpoint")
@cli_errors
def transparency_checkpoint() -> None:
    """Sign a checkpoint of the current tree now and ask the configured witnesses to cosign it."""
    from consentry.transparency.publisher import publish
    from consentry.transparency.service import LogContext, latest_checkpoint, signed_text

    log_ctx = LogContext.from_settings(get_settings())
    database = open_database()
    _, outcomes = publish(database, log_ctx, force=True)
    with database.read() as session:
        row = latest_checkpoint(session)
        text = signed_text(row) if row is not None else ""
    console.print(text, end="", highlight=False, soft_wrap=True)
    for outcome in outcomes:
        console.print(f"witness {outcome.witness}: {'ok' if outcome.ok else 'refused'} ({outcome.detail})")


@tlog_app.command("key")
@cli_errors
def transparency_key() -> None:
    """Print the log's verifier key (the checkpoint key, created on first use)."""
    from consentry.transparency.service import LogContext

    console.print(LogContext.from_settings(get_settings()).signer.vkey, soft_wrap=True)
