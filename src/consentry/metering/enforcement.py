"""What the metering middleware decides for a request, and how it says no.

``Decision`` is the mode, limit and price that apply to an attributed request; ``Plan`` is a decision with
what the middleware's hot path needs precomputed. The refusals (403 ``blocked``, 402 with the price, 429
``quota-exceeded`` with ``Retry-After`` and the IETF ``RateLimit`` fields) are problems rendered as every
error is (``consentry.problems``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from starlette.types import Send

from consentry import problems
from consentry.errors import ConsentryError, Forbidden, PaymentRequired, TooManyRequests
from consentry.metering.attribution import Attribution, Mode
from consentry.metering.meter import WINDOW_SECONDS, Usage
from consentry.metering.schemas import price_usd

PRICE_HEADER = "consentry-price-per-post"
OFFER_HEADER = "consentry-max-price-per-post"
POLICY_NAME = "posts-24h"


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


class Plan(NamedTuple):
    """A decision with what the hot path needs, precomputed."""

    decision: Decision
    subject: str
    meter_limit: int | None
    policy_header: bytes | None
    gated: bool
    organisation_id: int | None

    @classmethod
    def of(cls, decision: Decision) -> Plan:
        """The plan of a decision."""
        organisation = decision.attribution.organisation
        return cls(
            decision,
            decision.subject,
            decision.meter_limit,
            decision.policy_header,
            decision.gated,
            organisation.id if organisation else None,
        )


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


def ratelimit_fields(decision: Decision, usage: Usage) -> dict[str, str]:
    """The ``RateLimit-Policy`` and ``RateLimit`` fields of a refused request (none without a limit)."""
    if decision.limit is None:
        return {}
    remaining = decision.limit - usage.total
    return {
        "ratelimit-policy": f'"{POLICY_NAME}";q={decision.limit};qu="posts";w={WINDOW_SECONDS}',
        "ratelimit": f'"{POLICY_NAME}";r={remaining if remaining > 0 else 0};t={usage.reset}',
    }


def quota_exceeded(decision: Decision, usage: Usage, posts: int | None) -> TooManyRequests:
    """The 429 for a response of ``posts`` posts (``None``: refused before the endpoint ran)."""
    limit = decision.limit or 0
    never = usage.retry_after < 0
    retry = WINDOW_SECONDS if never else max(1, usage.retry_after)
    if never:
        detail = f"this response holds {posts} posts, more than the quota of {limit} posts per 24 hours"
    elif posts is None:
        detail = f"the quota of {limit} posts per 24 hours is used up"
    else:
        detail = f"serving {posts} more posts would exceed the quota of {limit} posts per 24 hours"
    return TooManyRequests(
        detail,
        retry_after=retry,
        headers=ratelimit_fields(decision, usage),
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


def blocked(decision: Decision) -> Forbidden:
    """The 403 of an organisation in ``block`` mode."""
    return Forbidden(
        f"access by {decision.attribution.label} is blocked; contact the operator for a licence",
        problem_type="blocked",
        extensions={"subject": decision.attribution.subject},
    )


def payment_required(decision: Decision, offer: int | None) -> PaymentRequired:
    """The 402 of a request in ``pay`` mode that offers less than the price (or nothing)."""
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


async def refuse(send: Send, error: ConsentryError) -> None:
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
