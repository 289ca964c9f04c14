"""A Spark cluster on this machine, started from the installed PySpark: a standalone master and
workers (``spark-class``), or a Spark Connect server (``spark-submit`` of the server class bundled with
PySpark 4), each on free loopback ports. For the cluster tests, the benchmarks, and trying cluster mode on
one machine; a real deployment runs its clusters with its own tooling (docs/operations.md).

Nothing is downloaded: PySpark 4 ships the Spark jars, the Spark Connect server's included
(``pyspark/jars/spark-connect_*.jar``); Java 17 or newer must be installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from consentry.errors import ConsentryError

CONNECT_SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"
LOOPBACK = "127.0.0.1"


class ClusterError(ConsentryError):
    """The cluster (or Java, or PySpark) could not be started."""


def spark_home() -> Path:
    """The Spark distribution inside the installed PySpark (``bin/``, ``jars/``, ``sbin/``)."""
    try:
        import pyspark
    except ImportError:
        raise ClusterError("PySpark is not installed (install Consentry's 'spark' extra)") from None
    home = Path(pyspark.__file__).parent
    if not (home / "bin" / "spark-class").is_file():
        raise ClusterError(f"the installed PySpark at {home} has no bin/spark-class")
    return home


def java() -> str:
    """The ``java`` on the path; ``ClusterError`` when there is none."""
    found = shutil.which("java")
    if found is None:
        raise ClusterError(
            "Java is not installed (Spark needs Java 17 or newer: apt-get install openjdk-17-jre)"
        )
    return found


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SparkProcesses:
    """Processes of a local Spark cluster (a context manager that stops them)."""

    url: str
    """``spark://127.0.0.1:PORT`` (standalone master) or ``sc://127.0.0.1:PORT`` (Spark Connect)."""
    logs: Path
    ui: str | None = None
    """The standalone master's web UI (``/json/`` describes workers and applications)."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _files: list[IO[bytes]] = field(default_factory=list)

    def status(self) -> dict[str, object]:
        """The standalone master's state (``/json/``: workers, ``aliveworkers``, ``activeapps``...)."""
        if self.ui is None:
            raise ClusterError("a Spark Connect server has no master status")
        answer: dict[str, object] = httpx.get(f"{self.ui}/json/", timeout=5).json()
        return answer

    def stop(self) -> None:
        """Stop every process (its whole process group: a worker's executors too), newest first."""
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for file in self._files:
            file.close()
        self.processes.clear()

    def __enter__(self) -> SparkProcesses:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _start(self, name: str, command: Sequence[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        self._files.append(log)
        # own process group, so that stop() ends its children with it; the command is built here only
        process = subprocess.Popen(  # noqa: S603
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def _died(self) -> str | None:
        for number, process in enumerate(self.processes):
            if process.poll() is not None:
                log = Path(self._files[number].name)
                tail = log.read_text("utf-8", "replace").strip().splitlines()[-5:]
                return f"{log.name} exited with {process.returncode}: " + " | ".join(tail)
        return None


def _wait(cluster: SparkProcesses, ready: object, timeout: float, what: str) -> None:
    """Poll ``ready()`` until true; stop everything and raise when a process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        died = cluster._died()
        if died is not None:
            cluster.stop()
            raise ClusterError(f"{what} did not start: {died}")
        try:
            if callable(ready) and ready():
                return
        except (httpx.HTTPError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            cluster.stop()
            raise ClusterError(f"{what} did not start within {timeout:.0f} s (logs in {cluster.logs})")
        time.sleep(0.5)


def start_standalone(
    *, work: Path, workers: int = 2, cores: int = 1, memory: str = "1g", timeout: float = 240
) -> SparkProcesses:
    """A standalone master and ``workers`` workers (``cores`` and ``memory`` each) on loopback; returns
    once every worker has registered. Logs and the workers' folders go under ``work``."""
    home, _ = spark_home(), java()
    work.mkdir(parents=True, exist_ok=True)
    spark_class = str(home / "bin" / "spark-class")
    port, ui_port = free_port(), free_port()
    properties = work / "master.properties"
    properties.write_text("spark.master.rest.enabled false\nspark.ui.showConsoleProgress false\n")
    cluster = SparkProcesses(url=f"spark://{LOOPBACK}:{port}", logs=work, ui=f"http://{LOOPBACK}:{ui_port}")
    try:
        cluster._start(
            "master",
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                *("--host", LOOPBACK, "--port", str(port), "--webui-port", str(ui_port)),
                *("--properties-file", str(properties)),
            ],
        )
        for number in range(workers):
            folder = work / f"worker-{number}"
            folder.mkdir(exist_ok=True)
            cluster._start(
                f"worker-{number}",
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    cluster.url,
                    *("--host", LOOPBACK, "--port", str(free_port()), "--webui-port", str(free_port())),
                    *("--cores", str(cores), "--memory", memory, "--work-dir", str(folder)),
                    *("--properties-file", str(properties)),
                ],
            )
    except OSError as error:
        cluster.stop()
        raise ClusterError(f"cannot run {spark_class}: {error}") from error

    def registered() -> bool:
        alive = cluster.status().get("aliveworkers", 0)
        return isinstance(alive, int) and alive >= workers

    _wait(cluster, registered, timeout, f"the standalone cluster ({workers} workers)")
    return cluster


def start_connect_server(
    *,
    work: Path,
    master: str = "local[2]",
    driver_memory: str = "1g",
    conf: Mapping[str, str] | None = None,
    timeout: float = 240,
) -> SparkProcesses:
    """A Spark Connect server (its own driver, running on ``master``) on a loopback port; returns once
    it accepts connections."""
    home, _ = spark_home(), java()
    jars = sorted((home / "jars").glob("spark-connect_*.jar"))
    if not jars:
        raise ClusterError(f"the installed PySpark at {home} does not ship the Spark Connect server jar")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "spark.connect.grpc.binding.address": LOOPBACK,
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        **(conf or {}),
    }
    command = [str(home / "bin" / "spark-submit"), "--class", CONNECT_SERVER, "--master", master]
    command += ["--driver-memory", driver_memory, "--name", "consentry-connect-server"]
    for key, value in settings.items():
        command += ["--conf", f"{key}={value}"]
    command.append("spark-internal")
    cluster = SparkProcesses(url=f"sc://{LOOPBACK}:{port}", logs=work)
    try:
        cluster._start("connect-server", command)
    except OSError as error:
        cluster.stop()
        raise ClusterError(f"cannot run spark-submit: {error}") from error

    def listening() -> bool:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True

    _wait(cluster, listening, timeout, "the Spark Connect server")
    return cluster
