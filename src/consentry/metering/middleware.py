"""Enforcement as pure ASGI middleware, for any Starlette or FastAPI application.

An endpoint reports how many posts its response serves with the ``X-Consentry-Posts`` response header
(stripped before the response leaves) or with ``report_posts(request, n)`` (which accumulates in
``request.state``). The middleware attributes the request, applies the organisation's mode, and meters
the posts when the response starts, in one meter call:

* ``block``: 403 before the endpoint runs.
* ``pay``: 402 with ``Consentry-Price-Per-Post: USD 0.0015`` unless the request carries
  ``Consentry-Max-Price-Per-Post`` at or above the price; then served and metered.
* ``throttle``: the response is served only if its posts fit under the limit (the quota, else the
  damages threshold) in the rolling 24 hours; otherwise 429 with ``Retry-After`` (the endpoint's response
  is discarded and nothing is counted). Once the limit is reached exactly, requests are refused before
  the endpoint runs until the oldest counted minute leaves the window.
* ``allow``: licensed; served and counted; with a quota it is enforced like ``throttle``.
* ``meter``: served and counted, however far over any limit.

Responses under a limit carry the IETF ``RateLimit-Policy`` and ``RateLimit`` fields
(``"posts-24h";q=1000000;qu="posts";w=86400`` and ``"posts-24h";r=250000;t=3600``). Refusals are
``application/problem+json``. Meter failures never fail a request: they are logged and counted. The
attribution directory is loaded at start-up (the middleware hooks the ASGI lifespan) and the first
requests of a process wait for that one load; a request that cannot be attributed all the same is
counted against ``unknown``, never served uncounted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consentry.config import DAMAGES_THRESHOLD_POSTS
from consentry.db import utcnow
from consentry.errors import InvalidInput
from consentry.metering.attribution import KEY_PREFIX, UNATTRIBUTED, Attribution, Directory, Mode
from consentry.metering.directory import DatabaseDirectory as DatabaseDirectory
from consentry.metering.directory import DirectorySource, StaticDirectory
from consentry.metering.enforcement import (
    OFFER_HEADER,
    PRICE_HEADER,
    Decision,
    Plan,
    blocked,
    payment_required,
    quota_exceeded,
    refuse,
)
from consentry.metering.enforcement import MiddlewareMetrics as MiddlewareMetrics
from consentry.metering.enforcement import parse_price as parse_price
from consentry.metering.meter import MemoryMeter, Meter, Usage, check_posts
from consentry.metering.schemas import price_usd
from consentry.metering.webbotauth import SignatureCheck, SignatureVerifier, SignedRequest

log = logging.getLogger("consentry.metering")

POSTS_HEADER = "x-consentry-posts"
STATE_KEY = "consentry_posts"
_POSTS = POSTS_HEADER.encode()
_ASKED_FIRST = frozenset({"block", "pay"})
"""Modes checked before the endpoint runs on every request (the others only once the window is full)."""
_WANTED = frozenset(
    {
        b"authorization",
        b"x-consentry-key",
        b"user-agent",
        b"x-forwarded-for",
        b"consentry-max-price-per-post",
        b"signature",
        b"signature-input",
        b"signature-agent",
        b"host",
    }
)


def report_posts(request: Any, posts: int) -> None:
    """Report posts served by the current response (accumulates; for endpoints without header access).

    ``request`` is a Starlette/FastAPI ``Request`` (or an ASGI scope).
    """
    posts = check_posts(posts)
    scope: MutableMapping[str, Any] = request.scope if hasattr(request, "scope") else request
    state = scope.setdefault("state", {})
    state[STATE_KEY] = state.get(STATE_KEY, 0) + posts


def posts_header(posts: int) -> dict[str, str]:
    """The response header reporting ``posts`` posts, e.g. ``Response(headers=posts_header(100))``."""
    return {POSTS_HEADER: str(check_posts(posts))}


class AccessLogSink(Protocol):
    """Receives metered responses (``consentry.metering.service.AccessLogWriter``)."""

    def record(
        self,
        *,
        subject: str,
        at: datetime,
        posts: int,
        organisation_id: int | None = None,
        route: str = "",
        client: str = "",
        basis: str = "",
        evidence: str = "",
    ) -> None:
        """Buffer one response's posts."""
        ...


class MeteringMiddleware:
    """Meters posts served per organisation and enforces its mode (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        meter: Meter,
        directory: Directory | DirectorySource,
        access_log: AccessLogSink | None = None,
        threshold: int = DAMAGES_THRESHOLD_POSTS,
        unregistered_mode: Mode = "meter",
        unregistered_price_micro_usd: int | None = None,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        trust_forwarded: bool = False,
        clock: Callable[[], datetime] = utcnow,
        metrics: MiddlewareMetrics | None = None,
        signatures: SignatureVerifier | None = None,
    ) -> None:
        check_posts(threshold, field="threshold")
        if unregistered_mode not in ("allow", "meter", "throttle", "block", "pay"):
            raise InvalidInput(f"unknown mode {unregistered_mode!r}", field="unregistered_mode")
        if unregistered_mode == "pay" and not unregistered_price_micro_usd:
            raise InvalidInput("pay mode needs a price per post", field="unregistered_price_micro_usd")
        self.app = app
        self.meter = meter
        self.directory: DirectorySource = (
            StaticDirectory(directory) if isinstance(directory, Directory) else directory
        )
        self.access_log = access_log
        self.threshold = threshold
        self.unregistered_mode: Mode = unregistered_mode
        self.unregistered_price = unregistered_price_micro_usd
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.trust_forwarded = trust_forwarded
        self.clock = clock
        self.metrics = metrics or MiddlewareMetrics()
        self.signatures = signatures or SignatureVerifier()
        # subject -> (limit, time until which the window stays full); a per-process shortcut
        self._full: dict[str, tuple[int, float]] = {}
        self._filtered = bool(self.include or self.exclude)
        self._memory = meter if type(meter) is MemoryMeter else None  # the synchronous fast path
        self._wall = clock is utcnow
        self._decisions: dict[tuple[bytes | None, bytes | None, str | None, bytes | None], Plan] = {}
        self._cached_directory: Directory | None = None
        self._signed_plans: dict[int, Plan] = {}
        self._unattributed = Plan.of(self.decide(UNATTRIBUTED))

    def _metered(self, path: str) -> bool:
        if self.include and not path.startswith(self.include):
            return False
        return not (self.exclude and path.startswith(self.exclude))

    def decide(self, attribution: Attribution) -> Decision:
        """Mode, limit and price for an attributed request."""
        policy = attribution.organisation
        mode: Mode = policy.mode if policy else self.unregistered_mode
        quota = policy.quota if policy else None
        price = policy.price_micro_usd if policy else self.unregistered_price
        if mode == "throttle":
            return Decision(attribution, mode, quota if quota is not None else self.threshold, True)
        if mode == "meter":
            return Decision(attribution, mode, quota if quota is not None else self.threshold, False)
        if mode in ("allow", "pay"):
            return Decision(attribution, mode, quota, quota is not None, price)
        return Decision(attribution, mode, None, False, price)

    def _client(self, scope: Scope, headers: dict[bytes, bytes]) -> str | None:
        if self.trust_forwarded:
            forwarded = headers.get(b"x-forwarded-for")
            if forwarded:
                return forwarded.decode("latin-1").split(",")[0].strip()
        client = scope.get("client")
        return str(client[0]) if client else None

    @staticmethod
    def _api_key(headers: dict[bytes, bytes]) -> str | None:
        key = headers.get(b"x-consentry-key", b"").decode("latin-1").strip()
        if key.startswith(KEY_PREFIX):
            return key
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        token = token.strip()
        if token.startswith(KEY_PREFIX) and scheme.lower() == "bearer":
            return token
        return None

    async def _decide_signed(
        self, directory: Directory, headers: dict[bytes, bytes], client: str | None, scope: Scope
    ) -> tuple[Plan, SignatureCheck | None]:
        """Attribution of a request that carries a signature: checked per request (never cached).

        With a shared meter the nonce is claimed with the count (one round trip), so a valid signature
        comes back as the check still to claim; a replay is then re-attributed when the response starts.
        """
        host = headers.get(b"host")
        if host is None:
            server = scope.get("server")
            host = f"{server[0]}:{server[1]}".encode() if server else b"localhost"
        path = scope.get("raw_path") or scope.get("path", "/").encode()
        query = scope.get("query_string", b"")
        url = f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}{path.decode('latin-1')}"
        if query:
            url += "?" + query.decode("latin-1")
        request = SignedRequest(
            scope.get("method", "GET"),
            url,
            {key.decode("latin-1"): value.decode("latin-1") for key, value in headers.items()},
        )
        check = self.signatures.check(request, directory.identities)
        deferred: SignatureCheck | None = None
        if check.ok and check.replay_key is not None:
            if self._memory is None:
                deferred = check  # claimed by the meter in the same round trip as the count
            elif not await self.meter.claim(check.replay_key, until=check.expires + self.signatures.skew):
                self.metrics.replayed_signatures += 1
                check = SignatureCheck(None, "replayed", check.agent, check.keyid)
        if check.identity is not None and check.identity.organisation_id in directory.organisations:
            self.metrics.signed_requests += 1
            if directory is not self._cached_directory:
                self._decisions.clear()
                self._signed_plans.clear()
                self._cached_directory = directory
            plan = self._signed_plans.get(check.identity.id)
            if plan is None:  # a valid signature decides alone: one plan per identity and snapshot
                attribution = directory.attribute(signature=check)
                plan = self._signed_plans[check.identity.id] = Plan.of(self.decide(attribution))
            return plan, deferred
        return self._attribute_failed(directory, headers, client, check), None

    def _attribute_failed(
        self, directory: Directory, headers: dict[bytes, bytes], client: str | None, check: SignatureCheck
    ) -> Plan:
        """The plan of a request whose signature did not count (``check`` says why)."""
        self.metrics.signature_failures += 1
        user_agent = headers.get(b"user-agent")
        attribution = directory.attribute(
            api_key=self._api_key(headers),
            client_ip=client,
            user_agent=user_agent.decode("latin-1") if user_agent is not None else None,
            signature=check,
        )
        if attribution.basis == "spoofed":
            self.metrics.spoofed_requests += 1
        return Plan.of(self.decide(attribution))

    def _decide(self, directory: Directory, headers: dict[bytes, bytes], client: str | None) -> Plan:
        """Attribution and decision, cached per (raw key headers, client, user agent) for one snapshot."""
        if directory is not self._cached_directory or len(self._decisions) >= 10_000:
            self._decisions.clear()
            self._signed_plans.clear()
            self._cached_directory = directory
        user_agent = headers.get(b"user-agent")
        cache_key = (headers.get(b"authorization"), headers.get(b"x-consentry-key"), client, user_agent)
        plan = self._decisions.get(cache_key)
        if plan is None:
            attribution = directory.attribute(
                api_key=self._api_key(headers),
                client_ip=client,
                user_agent=user_agent.decode("latin-1") if user_agent is not None else None,
            )
            if attribution.basis == "spoofed":
                self.metrics.spoofed_requests += 1
            plan = self._decisions[cache_key] = Plan.of(self.decide(attribution))
        elif plan.decision.attribution.basis == "spoofed":
            self.metrics.spoofed_requests += 1
        return plan

    async def prepare(self) -> None:
        """Load the attribution directory (at start-up, before the first request is served)."""
        try:
            await self.directory.get()
        except Exception:
            log.warning(
                "the metering directory could not be loaded at start-up; requests are counted against "
                "'unknown' until it loads",
                exc_info=True,
            )

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the lifespan through, loading the directory before start-up is reported complete."""

        async def starting(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await self.prepare()
            await send(message)

        await self.app(scope, receive, starting)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self._filtered and not self._metered(scope.get("path", ""))):
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        self.metrics.requests += 1
        now = time.time() if self._wall else self.clock().timestamp()
        wanted = _WANTED
        headers = {key: value for key, value in scope.get("headers", ()) if key in wanted}
        if self.trust_forwarded:
            client = self._client(scope, headers)
        else:
            peer = scope.get("client")
            client = str(peer[0]) if peer else None
        plan, deferred, directory = await self._attribute(scope, headers, client)
        extra: list[tuple[bytes, bytes]] | None = None
        if plan.gated and (plan.decision.mode in _ASKED_FIRST or plan.subject in self._full):
            extra = await self._gate(plan.decision, headers, now, send)
            if extra is None:
                return
        scope.setdefault("state", {})
        exchange = _Exchange(self, scope, send, plan, headers, client, now, extra, deferred, directory)
        await self.app(scope, receive, exchange.send)

    async def _attribute(
        self, scope: Scope, headers: dict[bytes, bytes], client: str | None
    ) -> tuple[Plan, SignatureCheck | None, Directory | None]:
        """The plan of a request, the signature check still to claim with the count (a shared meter), and
        the directory that decided. Never fails: a request that cannot be attributed counts against
        ``unknown``, never goes uncounted."""
        try:
            source = self.directory
            directory = source.directory if isinstance(source, StaticDirectory) else await source.get()
            if b"signature" in headers or b"signature-input" in headers:
                plan, deferred = await self._decide_signed(directory, headers, client, scope)
                return plan, deferred, directory
            return self._decide(directory, headers, client), None, directory
        except Exception:
            self.metrics.attribution_failures += 1
            log.exception("metering attribution failed; counting the request against 'unknown'")
            return self._unattributed, None, None

    def _response_posts(self, scope: Scope, message: Message) -> tuple[list[tuple[bytes, bytes]], int]:
        """The headers of a response start without the post count, and the count it reports."""
        out: list[tuple[bytes, bytes]] = []
        reported: bytes | None = None
        for key, value in message.get("headers", ()):
            if key == _POSTS:
                reported = value
            else:
                out.append((key, value))
        if reported is not None and reported.isdigit():
            return out, int(reported)
        return self._posts_otherwise(scope, out, reported)

    async def _gate(
        self, decision: Decision, headers: dict[bytes, bytes], now: float, send: Send
    ) -> list[tuple[bytes, bytes]] | None:
        """Checks before the endpoint runs: block, pay, a full window. None when refused (answered)."""
        if decision.mode == "block":
            self.metrics.blocked += 1
            await refuse(send, blocked(decision))
            return None
        extra: list[tuple[bytes, bytes]] = []
        if decision.mode == "pay":
            price = decision.price_micro_usd or 0
            extra = [(PRICE_HEADER.encode(), f"USD {price_usd(price)}".encode())]
            raw_offer = headers.get(OFFER_HEADER.encode())
            offer = parse_price(raw_offer.decode("latin-1") if raw_offer is not None else None)
            if offer is None or offer < price:
                self.metrics.payment_required += 1
                await refuse(send, payment_required(decision, offer))
                return None
        if decision.enforce and decision.limit is not None:
            full = self._full.get(decision.subject)
            if full is not None and full[0] == decision.limit and now < full[1]:
                retry = max(1, math.ceil(full[1] - now))
                usage = Usage(total=decision.limit, accepted=False, retry_after=retry, reset=retry)
                await self._throttle(send, decision, usage, None)
                return None
        return extra

    def _mark_full(self, subject: str, limit: int, now: float, usage: Usage) -> None:
        """Remember that the window is full until its oldest minute leaves (refuse early until then)."""
        if len(self._full) >= 100_000:
            self._full.clear()
        self._full[subject] = (limit, now + max(0, usage.reset))

    async def _refused(self, send: Send, decision: Decision, usage: Usage, posts: int, now: float) -> None:
        if decision.limit is not None and usage.total >= decision.limit:
            self._mark_full(decision.subject, decision.limit, now, usage)
        await self._throttle(send, decision, usage, posts)

    def _meter_failed(self) -> None:
        self.metrics.meter_errors += 1
        log.exception("the meter failed; serving without metering")

    def _posts_otherwise(
        self, scope: Scope, headers: list[tuple[bytes, bytes]], reported: bytes | None
    ) -> tuple[list[tuple[bytes, bytes]], int]:
        """The post count when the header is absent, not lower-case, or not a plain number."""
        if reported is None:
            kept = []
            for key, value in headers:
                if key.lower() == _POSTS:
                    reported = value
                else:
                    kept.append((key, value))
            headers = kept
        try:
            if reported is not None:
                text = reported.decode("latin-1").strip()
                if not text.isdigit():
                    raise InvalidInput(f"{POSTS_HEADER} must be a whole number, not {text!r}", field="posts")
                return headers, int(text)
            state = scope.get("state")
            return headers, check_posts(state.get(STATE_KEY, 0)) if state else 0
        except InvalidInput as error:
            self.metrics.invalid_counts += 1
            log.error("endpoint %s reported an invalid post count: %s", scope.get("path"), error.detail)
            return headers, 0

    async def _consume(
        self, decision: Decision, posts: int, now: float, once: tuple[str, float] | None = None
    ) -> Usage | None:
        limit = decision.limit if decision.enforce else None
        try:
            at = datetime.fromtimestamp(now, UTC)
            subject = decision.attribution.subject
            if once is None:
                return await self.meter.consume(subject, posts, limit=limit, at=at)
            return await self.meter.consume(subject, posts, limit=limit, at=at, once=once)
        except Exception:
            self.metrics.meter_errors += 1
            log.exception("the meter failed; serving without metering")
            return None

    def _log(self, plan: Plan, posts: int, now: float, scope: Scope, client: str | None) -> None:
        if self.access_log is None:
            return
        route = getattr(scope.get("route"), "path", None) or scope.get("path", "")
        try:
            self.access_log.record(
                subject=plan.subject,
                at=datetime.fromtimestamp(now, UTC),
                posts=posts,
                organisation_id=plan.organisation_id,
                route=str(route),
                client=client or "",
                basis=plan.decision.attribution.basis,
                evidence=plan.decision.attribution.evidence,
            )
        except Exception:
            self.metrics.access_log_errors += 1
            log.exception("recording to the access log failed")

    async def _throttle(self, send: Send, decision: Decision, usage: Usage, posts: int | None) -> None:
        self.metrics.throttled += 1
        await refuse(send, quota_exceeded(decision, usage, posts))


class _Exchange:
    """One metered request on its way: counts its posts, and applies the limit, when the response starts."""

    __slots__ = (
        "client",
        "deferred",
        "directory",
        "downstream",
        "extra",
        "headers",
        "middleware",
        "now",
        "plan",
        "refused",
        "scope",
    )

    def __init__(
        self,
        middleware: MeteringMiddleware,
        scope: Scope,
        downstream: Send,
        plan: Plan,
        headers: dict[bytes, bytes],
        client: str | None,
        now: float,
        extra: list[tuple[bytes, bytes]] | None,
        deferred: SignatureCheck | None,
        directory: Directory | None,
    ) -> None:
        self.middleware = middleware
        self.scope = scope
        self.downstream = downstream
        self.plan = plan
        self.headers = headers
        self.client = client
        self.now = now
        self.extra = extra
        self.deferred = deferred
        self.directory = directory
        self.refused = False

    async def send(self, message: Message) -> None:
        """The ``send`` the application answers through."""
        if message["type"] == "http.response.start":
            await self._start(message)
        elif not (self.refused and message["type"] == "http.response.body"):
            await self.downstream(message)  # the endpoint's body of a refused response is dropped

    async def _start(self, message: Message) -> None:
        middleware = self.middleware
        out, posts = middleware._response_posts(self.scope, message)
        usage = await self._meter(posts)
        if self.refused:
            return
        if usage is not None:
            plan = self.plan
            if not usage.accepted:
                self.refused = True
                await middleware._refused(self.downstream, plan.decision, usage, posts, self.now)
                return
            if plan.policy_header is not None:
                limit = plan.decision.limit
                remaining = limit - usage.total if limit is not None else 0
                out.append((b"ratelimit-policy", plan.policy_header))
                out.append((b"ratelimit", b'"posts-24h";r=%d;t=%d' % (max(remaining, 0), usage.reset)))
                if plan.meter_limit is not None and usage.total >= plan.meter_limit:
                    middleware._mark_full(plan.subject, plan.meter_limit, self.now, usage)
            metrics = middleware.metrics
            if usage.degraded:
                metrics.degraded_responses += 1
            if posts:
                metrics.posts += posts
                if middleware.access_log is not None:
                    middleware._log(plan, posts, self.now, self.scope, self.client)
        if self.extra:
            out += self.extra
        message["headers"] = out
        await self.downstream(message)

    async def _meter(self, posts: int) -> Usage | None:
        """Count the posts (``None``: the meter failed, or the request was refused meanwhile)."""
        middleware, plan = self.middleware, self.plan
        memory = middleware._memory
        if memory is not None:
            try:
                return memory.consume_checked(plan.subject, posts, plan.meter_limit, self.now)
            except Exception:
                middleware._meter_failed()
                return None
        deferred = self.deferred
        if deferred is None:
            return await middleware._consume(plan.decision, posts, self.now)
        once = (deferred.replay_key or "", deferred.expires + middleware.signatures.skew)
        usage = await middleware._consume(plan.decision, posts, self.now, once)
        if usage is None or not usage.replayed or self.directory is None:
            return usage
        return await self._replayed(deferred, self.directory, posts)

    async def _replayed(self, deferred: SignatureCheck, directory: Directory, posts: int) -> Usage | None:
        """The meter had seen this signature: the request counts as it would without one."""
        middleware = self.middleware
        middleware.metrics.signed_requests -= 1
        middleware.metrics.replayed_signatures += 1
        replayed = SignatureCheck(None, "replayed", deferred.agent, deferred.keyid)
        self.plan = plan = middleware._attribute_failed(directory, self.headers, self.client, replayed)
        if plan.gated:
            extra = await middleware._gate(plan.decision, self.headers, self.now, self.downstream)
            if extra is None:
                self.refused = True
                return None
            self.extra = extra
        return await middleware._consume(plan.decision, posts, self.now)
