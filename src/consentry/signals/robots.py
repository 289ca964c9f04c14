"""``/robots.txt`` and ``/.well-known/tdmrep.json``: the platform-wide signals for crawlers.

robots.txt (RFC 9309) has one group per AI crawler token of the shared crawler file (the one the meter
uses); blocked ones get ``Disallow: /`` (``Allow: /.well-known/`` keeps the machine-readable policies
readable). The default group (``*``) allows the public content routes, disallows account and admin
routes, and carries a Cloudflare ``Content-Signal:`` line (``search=yes, ai-train=no, ai-input=no`` by
default).

Which crawlers are blocked is the ``scope``: ``"all"`` (default) blocks every crawler of the file, because
an author's third-party setting covers training and real-time AI input alike and crawling bypasses the
consent checks of the release pipeline; ``"training"`` blocks only those whose documented purpose is
training (``trains_models``), and the others get the default rules.

tdmrep.json follows the W3C TDM Reservation Protocol: an array of rules ``{"location", "tdm-reservation",
"tdm-policy"?}``, most specific first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from consentry.errors import InvalidInput
from consentry.metering.attribution import Crawler, CrawlerCatalog, default_crawlers

Scope = Literal["all", "training"]
SCOPES: tuple[Scope, ...] = ("all", "training")
PUBLIC_PATHS: tuple[str, ...] = ("/v1/platform/posts/", "/v1/platform/accounts/")
"""Public content routes (posts, profiles, an account's posts)."""
PRIVATE_PATHS: tuple[str, ...] = ("/v1/me/", "/v1/admin/", "/v1/platform/me/", "/v1/platform/assistant/")
"""Routes no crawler should fetch: account holders' own data and operator routes."""
WELL_KNOWN = "/.well-known/"

_TRAINING = re.compile(r"\btrain(?:s|ed|ing)?\b|\bdatasets?\b|\bcorpus\b", re.IGNORECASE)
_COLLECTS_FOR_AI = re.compile(
    r"\b(?:collects?|downloads?|gathers?)\b[^.]*\b(?:ai|models?|llms?|machine[- ]learning)\b", re.IGNORECASE
)
_UNDOCUMENTED = re.compile(r"\bundocumented\b|\bunknown\b|\bunclear\b", re.IGNORECASE)
_ROBOTS_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
_PATH = re.compile(r"^/[A-Za-z0-9._~/%*$-]*$")


@dataclass(frozen=True)
class ContentSignals:
    """The platform-wide Content Signals (Cloudflare): what fetched content may be used for."""

    search: bool = True
    ai_train: bool = False
    ai_input: bool = False

    @property
    def value(self) -> str:
        """The directive value, e.g. ``search=yes, ai-train=no, ai-input=no``."""
        pairs = (("search", self.search), ("ai-train", self.ai_train), ("ai-input", self.ai_input))
        return ", ".join(f"{name}={'yes' if allowed else 'no'}" for name, allowed in pairs)


def trains_models(crawler: Crawler) -> bool:
    """Whether a crawler's documented purpose is (or may be) collecting training data.

    The crawler file describes purposes in words, so this reads them: a mention of training, datasets or
    a corpus counts, so does collecting data for AI or models, and so does an undocumented or unknown
    purpose (fail closed).
    """
    return any(p.search(crawler.purpose) for p in (_TRAINING, _COLLECTS_FOR_AI, _UNDOCUMENTED))


def blocked_crawlers(crawlers: CrawlerCatalog | None = None, *, scope: Scope = "all") -> tuple[Crawler, ...]:
    """The crawlers robots.txt disallows entirely, in file order."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}", field="scope")
    listed = tuple(crawlers if crawlers is not None else default_crawlers())
    return listed if scope == "all" else tuple(c for c in listed if trains_models(c))


def _check_paths(paths: Iterable[str], *, field: str) -> list[str]:
    checked = list(paths)
    for path in checked:
        if not _PATH.match(path):
            raise InvalidInput(f"{path!r} is not a robots.txt path", field=field)
    return checked


def robots_txt(
    *,
    crawlers: CrawlerCatalog | None = None,
    scope: Scope = "all",
    signals: ContentSignals | None = None,
    public_paths: Sequence[str] = PUBLIC_PATHS,
    private_paths: Sequence[str] = PRIVATE_PATHS,
) -> str:
    """The robots.txt text: one group per known AI crawler, then the default group (``*``).

    Blocked crawlers get ``Disallow: /``; with ``scope="training"`` the other known crawlers get a group
    of their own with the default rules, so that parsers matching tokens by prefix or substring (``omgili``
    in ``omgilibot``) still find their own group. Groups go longest token first for parsers that take the
    first matching group.
    """
    signals = signals or ContentSignals()
    listed = tuple(crawlers if crawlers is not None else default_crawlers())
    blocked = {c.token for c in blocked_crawlers(crawlers, scope=scope)}
    default_rules = [
        f"Content-Signal: {signals.value}",
        *(f"Allow: {path}" for path in _check_paths(public_paths, field="public_paths")),
        *(f"Disallow: {path}" for path in _check_paths(private_paths, field="private_paths")),
    ]
    lines = [
        "# Generated by Consentry from its AI crawler list; do not edit by hand.",
        "# Known AI crawlers may not fetch content. Per-post usage preferences of each author are sent",
        "# in the Content-Usage header (IETF AI preferences); TDM rights: /.well-known/tdmrep.json.",
        "# Content-Signal: yes = allowed, no = not allowed, for content fetched from this site:",
        "#   search = search index and results with links; ai-input = input to AI answers (RAG,",
        "#   grounding); ai-train = training or fine-tuning AI models.",
        "",
    ]
    for crawler in sorted(listed, key=lambda c: -len(c.token)):
        if not _ROBOTS_TOKEN.match(crawler.token):
            raise InvalidInput(
                f"crawler token {crawler.token!r} cannot be written to robots.txt", field="token"
            )
        rules = [f"Allow: {WELL_KNOWN}", "Disallow: /"] if crawler.token in blocked else default_rules
        lines += [f"# {crawler.operator}", f"User-agent: {crawler.token}", *rules, ""]
    lines += ["User-agent: *", *default_rules]
    return "\n".join(lines) + "\n"


def tdmrep(
    *, public_paths: Sequence[str] = PUBLIC_PATHS, policy_url: str | None = None
) -> list[dict[str, Any]]:
    """The tdmrep.json rules: TDM rights reserved (``1``) on the public content routes and everywhere else.

    ``policy_url`` (an http(s) URL of the operator's TDM policy, where licences can be obtained) is added
    to each rule when given.
    """
    if policy_url is not None and not policy_url.startswith(("https://", "http://")):
        raise InvalidInput("the TDM policy must be an http(s) URL", field="policy_url")
    locations = [*_check_paths(public_paths, field="public_paths"), "/"]
    rules: list[dict[str, Any]] = []
    for location in dict.fromkeys(locations):
        rule: dict[str, Any] = {"location": location, "tdm-reservation": 1}
        if policy_url is not None:
            rule["tdm-policy"] = policy_url
        rules.append(rule)
    return rules
