"""Who is reading: a signature, an API key, a configured network, an AI crawler user agent, or else the
client network.

Attribution runs on every metered request, so it works on an in-memory :class:`Directory` snapshot
(loaded from the database by ``consentry.metering.service.load_directory``), never on the database:

1. a valid Web Bot Auth signature of an agent an organisation registered (basis ``signed``);
2. a valid organisation API key (``Authorization: Bearer cso_...`` or ``X-Consentry-Key``; ``api_key``);
3. the client address inside a configured network (longest prefix wins; ``network``);
4. a known AI crawler token in the user agent (``user_agent``): the organisation named like the
   crawler's operator, if one is registered, otherwise the operator itself as ``crawler:<operator>``.
   If that organisation registered a signature agent or networks, a request that reached this step
   proved neither, so it is ``spoofed``: counted as ``spoofed:<operator>``, never billed to it;
5. the client network: ``/24`` for IPv4, ``/64`` for IPv6 (``net:<network>``; ``unknown``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from consentry.errors import InvalidInput
from consentry.metering.webbotauth import IdentityIndex, SignatureCheck

KEY_PREFIX = "cso_"
Mode = Literal["allow", "meter", "throttle", "block", "pay"]
Kind = Literal["key", "network", "crawler", "client", "unknown", "signed", "spoofed"]
Basis = Literal["signed", "api_key", "network", "user_agent", "spoofed", "unknown"]
BASES: tuple[Basis, ...] = ("signed", "api_key", "network", "user_agent", "spoofed", "unknown")
"""How a request was attributed, strongest first (stored per access-log bucket)."""
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{1,63}$")


def hash_key(key: str) -> str:
    """The stored form of an organisation API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def slug(text: str) -> str:
    """A lower-case, dash-separated form of a name, for subject keys."""
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-") or "unknown"


# --- networks ------------------------------------------------------------------------------------------


def parse_network(cidr: str, *, field: str = "cidr") -> IPNetwork:
    """Parse a CIDR such as ``203.0.113.0/24`` or ``2001:db8::/32``; ``InvalidInput`` if malformed."""
    if not isinstance(cidr, str) or not cidr.strip():
        raise InvalidInput("a network must be given in CIDR notation, e.g. 203.0.113.0/24", field=field)
    text = cidr.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InvalidInput(f"{text!r} is not a CIDR network ({error})", field=field) from error
        raise InvalidInput(f"{text!r} has host bits set; did you mean {loose}?", field=field) from error


def client_network(address: str | None) -> str:
    """The fallback network of a client address: its /24 (IPv4) or /64 (IPv6), or ``unknown``."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class NetworkTable:
    """Longest-prefix lookup of client addresses in configured networks."""

    def __init__(self, networks: Iterable[tuple[str, int]] = ()) -> None:
        self._tables: dict[int, dict[int, dict[int, int]]] = {4: {}, 6: {}}
        self._count = 0
        for cidr, organisation_id in networks:
            network = parse_network(cidr)
            table = self._tables[network.version].setdefault(network.prefixlen, {})
            table[int(network.network_address)] = organisation_id
            self._count += 1
        self._lengths = {version: sorted(table, reverse=True) for version, table in self._tables.items()}
        self.organisations = frozenset(
            organisation
            for table in self._tables.values()
            for t in table.values()
            for organisation in t.values()
        )

    def __len__(self) -> int:
        return self._count

    def lookup(self, address: str | None) -> int | None:
        """The organisation owning the most specific network that contains ``address``."""
        if not address or not self._count:
            return None
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        bits = 32 if ip.version == 4 else 128
        value = int(ip)
        tables = self._tables[ip.version]
        for length in self._lengths[ip.version]:
            masked = value >> (bits - length) << (bits - length) if length else 0
            found = tables[length].get(masked)
            if found is not None:
                return found
        return None


# --- crawlers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crawler:
    """A known AI crawler: its user-agent (and robots.txt) token, operator and purpose."""

    token: str
    operator: str
    purpose: str
    url: str | None = None


class CrawlerCatalog:
    """The known AI crawlers, matched against user agents (case-insensitive, whole tokens)."""

    def __init__(self, crawlers: Sequence[Crawler]) -> None:
        seen: set[str] = set()
        for crawler in crawlers:
            key = crawler.token.casefold()
            if key in seen:
                raise InvalidInput(f"crawler token {crawler.token!r} is listed twice", field="token")
            seen.add(key)
        self.crawlers: tuple[Crawler, ...] = tuple(crawlers)
        self._by_token = {crawler.token.casefold(): crawler for crawler in self.crawlers}
        if self.crawlers:
            tokens = sorted((re.escape(c.token) for c in self.crawlers), key=len, reverse=True)
            alternation = "|".join(tokens)
            self._pattern: re.Pattern[str] | None = re.compile(
                rf"(?<![A-Za-z0-9_-])({alternation})(?![A-Za-z0-9_-])", re.IGNORECASE
            )
        else:
            self._pattern = None
        self.match = lru_cache(maxsize=4096)(self._match)

    def __len__(self) -> int:
        return len(self.crawlers)

    def __iter__(self) -> Iterator[Crawler]:
        return iter(self.crawlers)

    def _match(self, user_agent: str | None) -> Crawler | None:
        """The crawler whose token appears in ``user_agent`` (the longest token wins), if any."""
        if not user_agent or self._pattern is None:
            return None
        found = self._pattern.search(user_agent)
        return self._by_token[found.group(1).casefold()] if found else None

    @classmethod
    def from_data(cls, data: Any, *, source: str = "crawler file") -> CrawlerCatalog:
        """Build a catalog from parsed JSON: a list of entries or ``{"crawlers": [...]}``."""
        entries = data.get("crawlers") if isinstance(data, dict) else data
        if not isinstance(entries, list) or not entries:
            raise InvalidInput(f"{source}: expected a non-empty list of crawlers", field="crawlers")
        crawlers: list[Crawler] = []
        for index, entry in enumerate(entries):
            where = f"{source}: entry {index}"
            if not isinstance(entry, dict):
                raise InvalidInput(f"{where} is not an object", field="crawlers")
            unknown = set(entry) - {"token", "operator", "purpose", "url"}
            if unknown:
                raise InvalidInput(f"{where} has unknown fields {sorted(unknown)}", field="crawlers")
            token, operator = entry.get("token"), entry.get("operator")
            purpose, url = entry.get("purpose", ""), entry.get("url")
            if not isinstance(token, str) or not _TOKEN.match(token) or token != token.strip():
                raise InvalidInput(f"{where}: token {token!r} is not a user-agent token", field="token")
            if not isinstance(operator, str) or not operator.strip():
                raise InvalidInput(f"{where}: operator must be a non-empty string", field="operator")
            if not isinstance(purpose, str):
                raise InvalidInput(f"{where}: purpose must be a string", field="purpose")
            if url is not None and (not isinstance(url, str) or not url.startswith(("https://", "http://"))):
                raise InvalidInput(f"{where}: url must be an http(s) URL or null", field="url")
            crawlers.append(Crawler(token=token, operator=operator.strip(), purpose=purpose, url=url))
        return cls(crawlers)

    @classmethod
    def load(cls, path: Path | str | None = None) -> CrawlerCatalog:
        """Load a crawler file (JSON); the shipped ``ai_crawlers.json`` when ``path`` is None."""
        if path is None:
            text = resources.files("consentry.metering").joinpath("ai_crawlers.json").read_text("utf-8")
            source = "ai_crawlers.json"
        else:
            source = str(path)
            try:
                text = Path(path).read_text("utf-8")
            except OSError as error:
                raise InvalidInput(f"cannot read crawler file {source}: {error}", field="crawlers") from error
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{source} is not valid JSON: {error}", field="crawlers") from error
        return cls.from_data(data, source=source)


@lru_cache(maxsize=1)
def default_crawlers() -> CrawlerCatalog:
    """The shipped catalog of AI crawlers (loaded once)."""
    return CrawlerCatalog.load()


# --- the directory -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgPolicy:
    """What the middleware needs to know about an organisation."""

    id: int
    name: str
    mode: Mode
    quota: int | None = None
    price_micro_usd: int | None = None

    @property
    def subject(self) -> str:
        """The meter key of this organisation."""
        return f"org:{self.id}"


@dataclass(frozen=True)
class Attribution:
    """The result of attributing one request."""

    subject: str
    kind: Kind
    label: str
    organisation: OrgPolicy | None = None
    crawler: Crawler | None = None
    basis: Basis = "unknown"
    evidence: str = ""
    """Why a signature did not count (a :data:`consentry.metering.webbotauth.REASONS` entry), or the
    signing agent for ``signed``; empty otherwise."""


UNATTRIBUTED = Attribution("unknown", "unknown", "unknown (attribution failed)")
"""What a request counts against when it cannot be attributed (no directory yet, or an error)."""


class Directory:
    """A snapshot of organisations, keys and networks, plus the crawler catalog."""

    def __init__(
        self,
        organisations: Iterable[OrgPolicy] = (),
        *,
        keys: Mapping[str, int] | None = None,
        networks: NetworkTable | None = None,
        crawlers: CrawlerCatalog | None = None,
        identities: IdentityIndex | None = None,
    ) -> None:
        self.organisations: dict[int, OrgPolicy] = {policy.id: policy for policy in organisations}
        self.keys: Mapping[str, int] = keys or {}
        self.networks = networks or NetworkTable()
        self.crawlers = crawlers or default_crawlers()
        self.identities = identities or IdentityIndex()
        self._by_name = {policy.name.casefold(): policy for policy in self.organisations.values()}
        self._provable = self.networks.organisations | self.identities.organisations

    def organisation_named(self, name: str) -> OrgPolicy | None:
        """The organisation with this name (case-insensitive), if registered."""
        return self._by_name.get(name.casefold())

    def attribute(
        self,
        *,
        api_key: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
        signature: SignatureCheck | None = None,
    ) -> Attribution:
        """Attribute a request: signature, key, network, crawler user agent, then client network.

        ``signature`` is the outcome of checking the request's Web Bot Auth signature (None: unsigned).
        """
        evidence = ""
        if signature is not None:
            if signature.identity is not None:
                policy = self.organisations.get(signature.identity.organisation_id)
                if policy is not None:
                    return Attribution(
                        policy.subject,
                        "signed",
                        policy.name,
                        organisation=policy,
                        basis="signed",
                        evidence=signature.identity.agent,
                    )
                evidence = "unknown-agent"
            else:
                evidence = signature.reason
        if api_key:
            organisation_id = self.keys.get(hash_key(api_key))
            policy = self.organisations.get(organisation_id) if organisation_id is not None else None
            if policy is not None:
                return Attribution(
                    policy.subject,
                    "key",
                    policy.name,
                    organisation=policy,
                    basis="api_key",
                    evidence=evidence,
                )
        organisation_id = self.networks.lookup(client_ip)
        if organisation_id is not None:
            policy = self.organisations.get(organisation_id)
            if policy is not None:
                return Attribution(
                    policy.subject,
                    "network",
                    policy.name,
                    organisation=policy,
                    basis="network",
                    evidence=evidence,
                )
        crawler = self.crawlers.match(user_agent)
        if crawler is not None:
            policy = self.organisation_named(crawler.operator)
            if policy is not None and policy.id in self._provable:
                return Attribution(
                    f"spoofed:{slug(crawler.operator)}",
                    "spoofed",
                    f"{crawler.operator} (spoofed)",
                    crawler=crawler,
                    basis="spoofed",
                    evidence=evidence or "unsigned",
                )
            if policy is not None:
                return Attribution(
                    policy.subject,
                    "crawler",
                    policy.name,
                    organisation=policy,
                    crawler=crawler,
                    basis="user_agent",
                    evidence=evidence,
                )
            subject = f"crawler:{slug(crawler.operator)}"
            return Attribution(
                subject, "crawler", crawler.operator, crawler=crawler, basis="user_agent", evidence=evidence
            )
        network = client_network(client_ip)
        return Attribution(f"net:{network}", "client", network, evidence=evidence)
