"""The console of the CLI fits the terminal, and writes whole lines everywhere else."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pytest
import typer
from rich.table import Table

from consentry.cli_support import CliConsole, claim_listen_address, runnable_command, shell_path


def test_output_to_a_file_or_pipe_is_neither_wrapped_nor_cut() -> None:
    out = io.StringIO()
    console = CliConsole(file=out)
    long_line = "Settings page: http://127.0.0.1:8000/settings   (sign in with an account token below)" * 3
    console.print(long_line)
    table = Table("subject", "organisation")
    table.add_row("net:127.0.0.0/8-and-a-long-network-name-" * 3, "Scraper Incorporated " * 4)
    console.print(table)
    text = out.getvalue()
    assert long_line in text.splitlines()
    assert "net:127.0.0.0/8-and-a-long-network-name-" * 3 in text and "…" not in text


def test_a_terminal_still_gets_its_own_width() -> None:
    console = CliConsole(file=io.StringIO(), force_terminal=True, width=40)
    assert console.width == 40


def test_a_busy_port_is_refused_before_it_becomes_the_operator_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONSENTRY_LISTEN_URL", raising=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(typer.Exit) as raised:
            claim_listen_address("127.0.0.1", port, other_port_hint="consentry serve --port {port}")
    assert raised.value.exit_code == 1
    assert f"consentry serve --port {port + 1}" in capsys.readouterr().err
    assert "CONSENTRY_LISTEN_URL" not in os.environ


def test_commands_are_printed_as_the_shell_can_run_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "consentry"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert runnable_command() == ".venv/bin/consentry"  # not activated: the path
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert runnable_command() == "consentry"  # activated: the bare name runs this very script
    assert shell_path(tmp_path / "consentry-data" / "demo-lake") == "consentry-data/demo-lake"
