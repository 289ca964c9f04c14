"""Benchmark: generate a synthetic lake (issue 3 target: 1M accounts, 10M posts in <= 60 s, <= 4 GiB).

Each measurement runs in a fresh subprocess, which reports its own wall time and peak resident memory
(``ru_maxrss``), so runs never share caches or memory. The baseline, measured in the same run, is the floor
for this much output: writing the same number of rows and columns per folder as random int64 columns to
Parquet with pyarrow (same compression, same row groups, one thread), without generating anything
realistic. The ratio is generation time over baseline time. The generated lake is then checked with
``consentry lake check`` (timed separately; not part of the generation figures).

    .venv/bin/python bench/generate_lake.py                      # full scale, one run
    .venv/bin/python bench/generate_lake.py --runs 3             # medians of three runs
    .venv/bin/python bench/generate_lake.py --accounts 100000 --posts 1000000
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SECONDS = 60.0
TARGET_BYTES = 4 * 1024**3


def _peak_bytes() -> int:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def child_generate(out: Path, accounts: int, posts: int, seed: int) -> dict[str, Any]:
    from consentry.lake.check import check_lake
    from consentry.lake.generate import generate_lake

    started = time.perf_counter()
    stats = generate_lake(out, accounts=accounts, posts=posts, seed=seed)
    seconds = time.perf_counter() - started
    peak = _peak_bytes()
    started = time.perf_counter()
    report = check_lake(out)
    return {
        "seconds": seconds,
        "peak_bytes": peak,
        "rows": stats.rows,
        "bytes": stats.bytes,
        "files": stats.files,
        "shape": stats.shape,
        "check_seconds": time.perf_counter() - started,
        "check_ok": report.ok,
        "violations": [v.message for v in report.violations],
    }


def child_baseline(out: Path, rows: dict[str, int]) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from consentry.lake.schema import FOLDERS_BY_NAME

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for name, total in rows.items():
        folder = out / name
        folder.mkdir(parents=True)
        columns = len(FOLDERS_BY_NAME[name].columns)
        chunk = 500_000
        for index, start in enumerate(range(0, max(total, 1), chunk)):
            size = min(chunk, total - start)
            table = pa.table({f"c{i}": rng.integers(0, 2**62, size) for i in range(columns)})
            pq.write_table(
                table, folder / f"part-{index:05d}.parquet", row_group_size=262_144, compression="zstd"
            )
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_bytes": _peak_bytes()}


def _in_subprocess(*arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *arguments], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--posts", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, out, *rest = args.child
        if kind == "generate":
            result = child_generate(Path(out), args.accounts, args.posts, args.seed)
        else:
            result = child_baseline(Path(out), json.loads(rest[0]))
        print(json.dumps(result))
        return

    print(
        f"lake generation: {args.accounts:,} accounts, {args.posts:,} posts, seed {args.seed}, "
        f"{args.runs} run(s); "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
    )
    runs = []
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="consentry-bench-") as scratch:
            lake = Path(scratch) / "lake"
            generated = _in_subprocess(
                "generate", str(lake), "--accounts", str(args.accounts), "--posts", str(args.posts),
                "--seed", str(args.seed),
            )  # fmt: skip
            shutil.rmtree(lake)
            baseline = _in_subprocess("baseline", str(Path(scratch) / "floor"), json.dumps(generated["rows"]))
        ratio = generated["seconds"] / baseline["seconds"]
        runs.append((generated, baseline, ratio))
        rows = sum(generated["rows"].values())
        print(
            f"run {number}: generate {generated['seconds']:.1f} s, "
            f"peak {generated['peak_bytes'] / 2**20:,.0f} MiB, "
            f"{rows:,} rows, {generated['files']} files, {generated['bytes'] / 2**20:,.0f} MiB on disk | "
            f"baseline (random int64 to Parquet) {baseline['seconds']:.1f} s, "
            f"peak {baseline['peak_bytes'] / 2**20:,.0f} MiB | ratio {ratio:.2f}x | "
            f"lake check {generated['check_seconds']:.1f} s "
            f"({'clean' if generated['check_ok'] else 'VIOLATIONS'})"
        )
        for message in generated["violations"]:
            print(f"  violation: {message}")

    generated_rows = runs[0][0]["rows"]
    seconds = statistics.median(g["seconds"] for g, _, _ in runs)
    peak = max(g["peak_bytes"] for g, _, _ in runs)
    baseline_seconds = statistics.median(b["seconds"] for _, b, _ in runs)
    print("rows: " + ", ".join(f"{name} {count:,}" for name, count in generated_rows.items()))
    print("shape: " + ", ".join(f"{name} {value:.4g}" for name, value in runs[0][0]["shape"].items()))
    print(
        f"median generate {seconds:.1f} s (target <= {TARGET_SECONDS:.0f} s: "
        f"{'met' if seconds <= TARGET_SECONDS else 'MISSED'}), peak memory {peak / 2**30:.2f} GiB "
        f"(target <= 4 GiB: {'met' if peak <= TARGET_BYTES else 'MISSED'}), median baseline "
        f"{baseline_seconds:.1f} s, ratio {seconds / baseline_seconds:.2f}x, median lake check "
        f"{statistics.median(g['check_seconds'] for g, _, _ in runs):.1f} s"
    )


if __name__ == "__main__":
    main()
