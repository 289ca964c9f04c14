"""A real webhook receiver for the tests and the benchmark: an HTTP server on 127.0.0.1 (uvicorn, on a thread
or in a process of its own) that checks every request with the ``standardwebhooks`` package, as a partner
would, and remembers what it processed, dropping repeated ``webhook-id``s.

Each partner posts to ``/hooks/<name>`` and is verified with its own secret. ``fail_status`` makes it answer
every webhook with that status (after verifying it), ``delay`` makes it slow; ``GET /stats`` returns the
counts as JSON. Run it alone (the benchmark does)::

    python -m tests.partners.receiver --port 8765 --secret bench=whsec_...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    partner: str
    message_id: str | None
    timestamp: str | None
    signature: str | None
    verified: bool
    answered: int
    payload: Any = None
    error: str | None = None


@dataclass
class Stats:
    requests: int = 0
    verified: int = 0
    rejected: int = 0
    processed: int = 0
    duplicates: int = 0
    max_parallel_same_id: int = 0


@dataclass
class ReceiverApp:
    """The ASGI application: verify, record, deduplicate, answer."""

    secrets: dict[str, str]
    fail_status: int | None = None
    delay: float = 0.0
    keep_requests: bool = True
    requests: list[Received] = field(default_factory=list)
    processed: dict[str, Any] = field(default_factory=dict)
    """``webhook-id`` -> payload of every message processed once (first verified, 2xx-answered request)."""
    stats: Stats = field(default_factory=Stats)
    attempts_by_id: Counter[str] = field(default_factory=Counter)
    _in_progress: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._hooks = {name: Webhook(secret) for name, secret in self.secrets.items()}

    def add(self, partner: str, secret: str) -> None:
        """Accept webhooks of ``partner`` at ``/hooks/<partner>``, verified with ``secret``."""
        self.secrets[partner] = secret
        self._hooks[partner] = Webhook(secret)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if scope["method"] == "GET" and path == "/stats":
            with self._lock:
                body = json.dumps(self.stats.__dict__ | {"unique": len(self.processed)}).encode()
            await _answer(send, 200, body)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        partner = path.removeprefix("/hooks/")
        message_id = headers.get("webhook-id")
        hook = self._hooks.get(partner) if path.startswith("/hooks/") else None
        if hook is None or scope["method"] != "POST":
            await _answer(send, 404, b"no such hook")
            return
        try:
            payload = hook.verify(body, headers)
            verified, error = True, None
        except WebhookVerificationError as exc:
            payload, verified, error = None, False, str(exc)
        answered = 401 if not verified else (self.fail_status or 200)
        with self._lock:
            self.stats.requests += 1
            if verified:
                self.stats.verified += 1
                assert message_id is not None
                self.attempts_by_id[message_id] += 1
                self._in_progress[message_id] += 1
                self.stats.max_parallel_same_id = max(
                    self.stats.max_parallel_same_id, self._in_progress[message_id]
                )
            else:
                self.stats.rejected += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            with self._lock:
                if verified:
                    assert message_id is not None
                    self._in_progress[message_id] -= 1
                    if answered < 300:
                        if message_id in self.processed:
                            self.stats.duplicates += 1
                        else:
                            self.processed[message_id] = payload
                            self.stats.processed += 1
                if self.keep_requests:
                    self.requests.append(
                        Received(
                            partner=partner,
                            message_id=message_id,
                            timestamp=headers.get("webhook-timestamp"),
                            signature=headers.get("webhook-signature"),
                            verified=verified,
                            answered=answered,
                            payload=payload,
                            error=error,
                        )
                    )
        await _answer(send, answered, b"ok" if answered < 300 else b"unavailable, try later")

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def free_port() -> int:
    """A TCP port nobody listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    """``ReceiverApp`` served by uvicorn on a thread; ``start()``/``stop()`` may be repeated (same port)."""

    def __init__(self, secrets: dict[str, str], *, port: int | None = None) -> None:
        self.app = ReceiverApp(secrets=secrets)
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def add(self, partner: str, secret: str) -> Receiver:
        self.app.add(partner, secret)
        return self

    def url(self, partner: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{partner}"

    def start(self) -> Receiver:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="receiver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the receiver did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # shortcuts to what the app recorded
    @property
    def requests(self) -> list[Received]:
        return self.app.snapshot()

    @property
    def processed(self) -> dict[str, Any]:
        with self.app._lock:
            return dict(self.app.processed)

    @property
    def stats(self) -> Stats:
        return self.app.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", action="append", default=[], help="partner=whsec_... (repeatable)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering")
    args = parser.parse_args()
    secrets = dict(item.split("=", 1) for item in args.secret)
    app = ReceiverApp(secrets=secrets, keep_requests=False, delay=args.delay)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off", access_log=False)


if __name__ == "__main__":
    main()
