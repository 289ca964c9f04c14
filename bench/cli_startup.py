"""CLI start-up: wall time of ``consentry --help`` and ``consentry dataset list`` against the import of
DuckDB alone (``python -c 'import duckdb'``) and a bare interpreter, alternated in the same run.

Target (issue "Speed where users feel it"): both commands <= 0.5 s. Each command runs in a fresh
process, as a user runs it; the figures are medians of ``--runs`` alternating rounds. ``dataset list``
runs against a SQLite database created (and migrated) before the first round.

    .venv/bin/python bench/cli_startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/x.py`: the repository root holds `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import report

CONSENTRY = [sys.executable, "-m", "consentry.cli"]
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import duckdb'": [sys.executable, "-c", "import duckdb"],
    "consentry --help": [*CONSENTRY, "--help"],
    "consentry dataset list": [*CONSENTRY, "dataset", "list"],
}


def wall(command: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of one process (its output discarded)."""
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9, help="alternating rounds (medians reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="consentry-startup-") as folder:
        env = {**os.environ, "CONSENTRY_HOME": folder}
        env.pop("CONSENTRY_DATABASE_URL", None)
        wall(COMMANDS["consentry dataset list"], env)  # creates and migrates the database
        samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.runs):
            for name, command in COMMANDS.items():
                samples[name].append(wall(command, env))
    load = os.getloadavg()
    figures: dict[str, object] = {"runs": args.runs, "load_average_1m_at_end": round(load[0], 1)}
    for name, values in samples.items():
        figures[f"{name} median s"] = round(statistics.median(values), 3)
        figures[f"{name} min-max s"] = f"{min(values):.3f}-{max(values):.3f}"
    duckdb = statistics.median(samples["python -c 'import duckdb'"])
    for name in ("consentry --help", "consentry dataset list"):
        figures[f"{name} / import duckdb"] = round(statistics.median(samples[name]) / duckdb, 2)
    report("cli_startup", figures)


if __name__ == "__main__":
    main()
