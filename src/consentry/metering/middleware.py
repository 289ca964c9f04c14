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
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consentry import problems
from consentry.config import DAMAGES_THRESHOLD_POSTS
from consentry.db import utcnow
from consentry.errors import ConsentryError, Forbidden, InvalidInput, PaymentRequired, TooManyRequests
from consentry.metering.attribution import KEY_PREFIX, UNATTRIBUTED, Attribution, Directory, Mode
from consentry.metering.directory import DatabaseDirectory as DatabaseDirectory
from consentry.metering.directory import DirectorySource, StaticDirectory
from consentry.metering.meter import WINDOW_SECONDS, MemoryMeter, Meter, Usage, check_posts
from consentry.metering.schemas import price_usd
from consentry.metering.webbotauth import SignatureCheck, SignatureVerifier, SignedRequest

log = logging.getLogger("consentry.metering")

POSTS_HEADER = "x-consentry-posts"
STATE_KEY = "consentry_posts"
PRICE_HEADER = "consentry-price-per-post"
OFFER_HEADER = "consentry-max-price-per-post"
POLICY_NAME = "posts-24h"
_POSTS = POSTS_HEADER.encode()
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
PROBLEM = "urn:consentry:problem:"


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


# --- the middleware ------------------------------------------------------------------------------------


@dataclass
class MiddlewareMetrics:
    """Counters of the middleware."""

    requests: int = 0
    posts: int = 0
    throttled: int = 0
    blocked: int = 0
    payment_required: int = 0
    degraded_responses: int = 0
    attribution_failures: int = 0
    meter_errors: int = 0
    invalid_counts: int = 0
    access_log_errors: int = 0
    signed_requests: int = 0
    signature_failures: int = 0
    replayed_signatures: int = 0
    spoofed_requests: int = 0

    def prometheus(self, prefix: str = "consentry_metering") -> str:
        """The counters in the Prometheus text format."""
        lines = []
        for item in fields(self):
            name = f"{prefix}_{item.name}_total"
            lines += [f"# TYPE {name} counter", f"{name} {getattr(self, item.name)}"]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Decision:
    """What applies to one request (cached per attribution key)."""

    attribution: Attribution
    mode: Mode
    limit: int | None
    """Posts per 24 hours announced in the RateLimit fields (None: no policy)."""
    enforce: bool
    price_micro_usd: int | None = None

    @property
    def subject(self) -> str:
        """The meter key."""
        return self.attribution.subject

    @property
    def meter_limit(self) -> int | None:
        """The limit the meter enforces (None: count everything)."""
        return self.limit if self.enforce else None

    @property
    def gated(self) -> bool:
        """Whether something must be checked before the endpoint runs."""
        return self.mode in ("block", "pay") or self.enforce

    @property
    def policy_header(self) -> bytes | None:
        """The ``RateLimit-Policy`` value."""
        if self.limit is None:
            return None
        return f'"{POLICY_NAME}";q={self.limit};qu="posts";w={WINDOW_SECONDS}'.encode()


class _Plan(NamedTuple):
    """A decision with what the hot path needs, precomputed."""

    decision: Decision
    subject: str
    meter_limit: int | None
    policy_header: bytes | None
    gated: bool
    organisation_id: int | None


def parse_price(text: str | None) -> int | None:
    """``'USD 0.0015'`` (or ``'0.0015'``) in micro-dollars; None if absent or malformed."""
    if not text:
        return None
    value = text.strip()
    if value[:3].upper() == "USD":
        value = value[3:].strip()
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return int((amount * 1_000_000).to_integral_value(rounding="ROUND_FLOOR"))


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
        self._decisions: dict[tuple[bytes | None, bytes | None, str | None, bytes | None], _Plan] = {}
        self._cached_directory: Directory | None = None
        self._signed_plans: dict[int, _Plan] = {}
        self._policies: dict[int, bytes] = {}
        self._unattributed = self._plan(self.decide(UNATTRIBUTED))

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
    ) -> tuple[_Plan, SignatureCheck | None]:
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
                plan = self._signed_plans[check.identity.id] = self._plan(self.decide(attribution))
            return plan, deferred
        return self._attribute_failed(directory, headers, client, check), None

    def _attribute_failed(
        self, directory: Directory, headers: dict[bytes, bytes], client: str | None, check: SignatureCheck
    ) -> _Plan:
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
        return self._plan(self.decide(attribution))

    def _decide(self, directory: Directory, headers: dict[bytes, bytes], client: str | None) -> _Plan:
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
            plan = self._decisions[cache_key] = self._plan(self.decide(attribution))
        elif plan.decision.attribution.basis == "spoofed":
            self.metrics.spoofed_requests += 1
        return plan

    @staticmethod
    def _plan(decision: Decision) -> _Plan:
        organisation = decision.attribution.organisation
        return _Plan(
            decision,
            decision.subject,
            decision.meter_limit,
            decision.policy_header,
            decision.gated,
            organisation.id if organisation else None,
        )

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
        metrics = self.metrics
        metrics.requests += 1
        now = time.time() if self._wall else self.clock().timestamp()
        wanted = _WANTED
        headers = {key: value for key, value in scope.get("headers", ()) if key in wanted}
        if self.trust_forwarded:
            client = self._client(scope, headers)
        else:
            peer = scope.get("client")
            client = str(peer[0]) if peer else None
        deferred: SignatureCheck | None = None
        directory: Directory | None = None
        try:
            source = self.directory
            directory = source.directory if isinstance(source, StaticDirectory) else await source.get()
            if b"signature" in headers or b"signature-input" in headers:
                plan, deferred = await self._decide_signed(directory, headers, client, scope)
            else:
                plan = self._decide(directory, headers, client)
        except Exception:  # never serve uncounted: the request counts against "unknown"
            metrics.attribution_failures += 1
            log.exception("metering attribution failed; counting the request against 'unknown'")
            plan = self._unattributed
        decision = plan.decision
        extra: list[tuple[bytes, bytes]] | None = None
        if plan.gated:
            extra = await self._gate(decision, headers, now, send)
            if extra is None:
                return
        scope.setdefault("state", {})
        subject, limit, policy, memory = plan.subject, plan.meter_limit, plan.policy_header, self._memory
        refused = False

        async def metered_send(message: Message) -> None:
            nonlocal refused, plan, decision, subject, limit, policy, extra
            if message["type"] == "http.response.start":
                out: list[tuple[bytes, bytes]] = []
                reported: bytes | None = None
                for key, value in message.get("headers", ()):
                    if key == _POSTS:
                        reported = value
                    else:
                        out.append((key, value))
                if reported is not None and reported.isdigit():
                    posts = int(reported)
                else:
                    out, posts = self._posts_otherwise(scope, out, reported)
                usage: Usage | None
                if memory is not None:
                    try:
                        usage = memory.consume_checked(subject, posts, limit, now)
                    except Exception:
                        self._meter_failed()
                        usage = None
                elif deferred is None:
                    usage = await self._consume(decision, posts, now)
                else:
                    once = (deferred.replay_key or "", deferred.expires + self.signatures.skew)
                    usage = await self._consume(decision, posts, now, once)
                    if usage is not None and usage.replayed and directory is not None:
                        metrics.signed_requests -= 1
                        metrics.replayed_signatures += 1
                        replayed = SignatureCheck(None, "replayed", deferred.agent, deferred.keyid)
                        plan = self._attribute_failed(directory, headers, client, replayed)
                        decision, subject, limit, policy = (
                            plan.decision,
                            plan.subject,
                            plan.meter_limit,
                            plan.policy_header,
                        )
                        if plan.gated:
                            extra = await self._gate(decision, headers, now, send)
                            if extra is None:
                                refused = True
                                return
                        usage = await self._consume(decision, posts, now)
                if usage is not None:
                    if not usage.accepted:
                        refused = True
                        await self._refused(send, decision, usage, posts, now)
                        return
                    if policy is not None:
                        remaining = decision.limit - usage.total if decision.limit is not None else 0
                        out.append((b"ratelimit-policy", policy))
                        out.append(
                            (b"ratelimit", b'"posts-24h";r=%d;t=%d' % (max(remaining, 0), usage.reset))
                        )
                        if limit is not None and usage.total >= limit:
                            self._mark_full(subject, limit, now, usage)
                    if usage.degraded:
                        metrics.degraded_responses += 1
                    if posts:
                        metrics.posts += posts
                        if self.access_log is not None:
                            self._log(plan, posts, now, scope, client)
                if extra:
                    out += extra
                message["headers"] = out
                await send(message)
                return
            if refused and message["type"] == "http.response.body":
                return  # the endpoint's body of a refused response is dropped
            await send(message)

        await self.app(scope, receive, metered_send)

    async def _gate(
        self, decision: Decision, headers: dict[bytes, bytes], now: float, send: Send
    ) -> list[tuple[bytes, bytes]] | None:
        """Checks before the endpoint runs: block, pay, a full window. None when refused (answered)."""
        if decision.mode == "block":
            self.metrics.blocked += 1
            await self._refuse(send, self._blocked(decision))
            return None
        extra: list[tuple[bytes, bytes]] = []
        if decision.mode == "pay":
            price = decision.price_micro_usd or 0
            extra = [(PRICE_HEADER.encode(), f"USD {price_usd(price)}".encode())]
            raw_offer = headers.get(OFFER_HEADER.encode())
            offer = parse_price(raw_offer.decode("latin-1") if raw_offer is not None else None)
            if offer is None or offer < price:
                self.metrics.payment_required += 1
                await self._refuse(send, self._payment_required(decision, offer))
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

    def _log(self, plan: _Plan, posts: int, now: float, scope: Scope, client: str | None) -> None:
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

    def _ratelimit_headers(self, decision: Decision, usage: Usage) -> list[tuple[bytes, bytes]]:
        if decision.limit is None:
            return []
        policy = self._policies.get(decision.limit)
        if policy is None:
            if len(self._policies) > 1000:
                self._policies.clear()
            text = f'"{POLICY_NAME}";q={decision.limit};qu="posts";w={WINDOW_SECONDS}'
            policy = self._policies[decision.limit] = text.encode()
        remaining = decision.limit - usage.total
        current = f'"{POLICY_NAME}";r={remaining if remaining > 0 else 0};t={usage.reset}'
        return [(b"ratelimit-policy", policy), (b"ratelimit", current.encode())]

    async def _throttle(self, send: Send, decision: Decision, usage: Usage, posts: int | None) -> None:
        self.metrics.throttled += 1
        limit = decision.limit or 0
        never = usage.retry_after < 0
        retry = WINDOW_SECONDS if never else max(1, usage.retry_after)
        if never:
            detail = f"this response holds {posts} posts, more than the quota of {limit} posts per 24 hours"
        elif posts is None:
            detail = f"the quota of {limit} posts per 24 hours is used up"
        else:
            detail = f"serving {posts} more posts would exceed the quota of {limit} posts per 24 hours"
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in self._ratelimit_headers(decision, usage)
        }
        refused = TooManyRequests(
            detail,
            retry_after=retry,
            headers=headers,
            problem_type="quota-exceeded",
            extensions={
                "subject": decision.attribution.subject,
                "limit": limit,
                "used": usage.total,
                "requested": posts,
                "window_seconds": WINDOW_SECONDS,
                "retry_after": retry,
            },
        )
        await self._refuse(send, refused)

    @staticmethod
    def _blocked(decision: Decision) -> Forbidden:
        return Forbidden(
            f"access by {decision.attribution.label} is blocked; contact the operator for a licence",
            problem_type="blocked",
            extensions={"subject": decision.attribution.subject},
        )

    @staticmethod
    def _payment_required(decision: Decision, offer: int | None) -> PaymentRequired:
        price = decision.price_micro_usd or 0
        detail = (
            f"this content costs USD {price_usd(price)} per post; send '{OFFER_HEADER}: USD <amount>' "
            "with a maximum at or above it to accept"
        )
        return PaymentRequired(
            detail,
            headers={PRICE_HEADER: f"USD {price_usd(price)}"},
            extensions={
                "subject": decision.attribution.subject,
                "price_per_post_usd": price_usd(price),
                "price_per_post_micro_usd": price,
                "currency": "USD",
                "offered_micro_usd": offer,
            },
        )

    @staticmethod
    async def _refuse(send: Send, error: ConsentryError) -> None:
        """Answer with ``error``, rendered as every error is (``consentry.problems``)."""
        body = problems.encode(error, None)
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", problems.PROBLEM.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *(
                        (name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in error.headers.items()
                    ),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
