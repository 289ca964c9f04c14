"""Signed crawler requests: Web Bot Auth (HTTP Message Signatures, RFC 9421, with Ed25519).

A crawler operator publishes its Ed25519 keys as a JWKS at
``<agent>/.well-known/http-message-signatures-directory`` and signs each request: ``Signature-Input``
and ``Signature`` (RFC 9421) with the tag ``web-bot-auth``, covering ``@authority`` and the
``Signature-Agent`` field that names the agent (its origin). An organisation registers the agent it
signs as (:class:`Identity`); attribution calls :meth:`SignatureVerifier.check` and counts the request
as ``signed`` only when every check passes. Otherwise the result carries a reason, kept as evidence:

``malformed-signature-input``, ``no-web-bot-auth-signature``, ``unsupported-algorithm``,
``missing-created``, ``missing-expires``, ``created-in-future``, ``expired``,
``authority-not-covered``, ``agent-not-covered``, ``wrong-authority``, ``missing-signature-agent``,
``unknown-agent``, ``directory-unavailable``, ``unknown-key``, ``bad-signature``, ``replayed``.

The signature base and the Ed25519 check are the ``http-message-signatures`` library's; this module
adds the Web Bot Auth profile (tag, required components, the agent, time and replay rules). Keys are
named by their JWK thumbprint (RFC 7638), as the directory draft says.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import http_sf
from cryptography.exceptions import InvalidSignature as InvalidSignatureError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from consentry.errors import InvalidInput

log = logging.getLogger("consentry.metering")

TAG = "web-bot-auth"
DIRECTORY_PATH = "/.well-known/http-message-signatures-directory"
DIRECTORY_MEDIA_TYPE = "application/http-message-signatures-directory+json"
MAX_DIRECTORY_BYTES = 64 * 1024

REASONS = (
    "malformed-signature-input",
    "no-web-bot-auth-signature",
    "unsupported-algorithm",
    "missing-created",
    "missing-expires",
    "created-in-future",
    "expired",
    "authority-not-covered",
    "agent-not-covered",
    "wrong-authority",
    "missing-signature-agent",
    "unknown-agent",
    "directory-unavailable",
    "unknown-key",
    "bad-signature",
    "replayed",
)
"""Why a signed request was not counted as ``signed`` (the evidence of the access log)."""


# --- keys ------------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of an Ed25519 JWK: the key's ``keyid``."""
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The JWK of an Ed25519 public key (with its thumbprint as ``kid``)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
    return {**jwk, "kid": jwk_thumbprint(jwk)}


def parse_jwks(data: Any, *, source: str = "key directory") -> dict[str, Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS (``{"keys": [...]}``) by thumbprint; other key types are skipped.

    ``InvalidInput`` when it is not a JWKS or holds no usable Ed25519 key.
    """
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidInput(f"{source} is not JSON: {error}", field="jwks") from error
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(f'{source} is not a JWKS (an object with a "keys" list)', field="jwks")
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str):
            raise InvalidInput(f'{source}: an Ed25519 key has no "x"', field="jwks")
        try:
            raw = _unb64url(x)
            if len(raw) != 32:
                raise ValueError("an Ed25519 public key is 32 bytes")
            key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as error:
            raise InvalidInput(f"{source}: Ed25519 key {x!r} is malformed ({error})", field="jwks") from error
        keys[jwk_thumbprint(entry)] = key
    if not keys:
        raise InvalidInput(f"{source} holds no Ed25519 key", field="jwks")
    return keys


def normalise_agent(agent: str, *, field: str = "agent") -> str:
    """A signature agent's origin: ``https://crawler.example`` (lower-case host, no path or slash)."""
    if not isinstance(agent, str):
        raise InvalidInput("a signature agent is an http(s) origin", field=field)
    try:
        parts = urlsplit(agent.strip())
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as error:
        raise InvalidInput(f"{agent!r} is not an http(s) origin ({error})", field=field) from error
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise InvalidInput(f"{agent!r} is not an http(s) origin such as https://crawler.example", field=field)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInput(f"{agent!r} must be an origin, without a path or query", field=field)
    try:
        port = parts.port
    except ValueError as error:
        raise InvalidInput(f"{agent!r} has an invalid port", field=field) from error
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


@dataclass(frozen=True)
class Identity:
    """A Web Bot Auth agent registered by an organisation, with its pinned keys if any."""

    id: int
    organisation_id: int
    agent: str
    directory_url: str
    pinned: Mapping[str, Ed25519PublicKey] | None = None


@dataclass
class _Entry:
    keys: dict[str, Ed25519PublicKey] | None = None
    fetched_at: float = -math.inf
    next_fetch: float = -math.inf
    failures: int = 0
    error: str | None = None
    url: str = ""


class KeyStore:
    """Key directories fetched over HTTP and cached, refreshed within bounds.

    A directory is fetched when first needed and again after its ``Cache-Control: max-age``, clamped to
    ``[min_refresh, max_refresh]`` (``default_refresh`` without one). A failed fetch is retried after
    ``min_refresh`` seconds, doubling up to ``max_refresh``, and the last good keys stay in use for at
    most ``max_stale`` seconds after they were fetched; then the directory counts as unavailable and no
    request is counted as signed by it. ``refresh`` runs off the request path (when the attribution
    snapshot loads); requests only read the cache.
    """

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        default_refresh: float = 3600.0,
        min_refresh: float = 60.0,
        max_refresh: float = 86_400.0,
        max_stale: float = 86_400.0,
        monotonic: Callable[[], float] = time.monotonic,
        transport: Any | None = None,
    ) -> None:
        self.timeout = timeout
        self.default_refresh = default_refresh
        self.min_refresh = min_refresh
        self.max_refresh = max_refresh
        self.max_stale = max_stale
        self.fetches = 0
        self.fetch_failures = 0
        self._monotonic = monotonic
        self._transport = transport
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _max_age(self, cache_control: str | None) -> float:
        for part in (cache_control or "").split(","):
            name, _, value = part.strip().partition("=")
            if name.lower() == "max-age" and value.strip().isdigit():
                return min(self.max_refresh, max(self.min_refresh, float(value.strip())))
        return self.default_refresh

    def fetch(self, url: str) -> tuple[dict[str, Ed25519PublicKey], float]:
        """Fetch and parse one key directory: (keys, seconds until the next refresh). Raises on error."""
        import httpx

        accept = {"accept": f"{DIRECTORY_MEDIA_TYPE}, application/json"}
        with (
            httpx.Client(timeout=self.timeout, follow_redirects=False, transport=self._transport) as client,
            client.stream("GET", url, headers=accept) as r,
        ):
            if r.status_code != 200:
                raise InvalidInput(f"{url} answered {r.status_code}", field="directory_url")
            body = b""
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > MAX_DIRECTORY_BYTES:
                    raise InvalidInput(f"{url} is larger than {MAX_DIRECTORY_BYTES} bytes", field="jwks")
            keys = parse_jwks(body, source=url)
            return keys, self._max_age(r.headers.get("cache-control"))

    def refresh(self, identities: Iterable[Identity]) -> None:
        """Fetch the directories that are due (never more often than the bounds allow)."""
        now = self._monotonic()
        for identity in identities:
            if identity.pinned is not None:
                continue
            with self._lock:
                entry = self._entries.setdefault(identity.directory_url, _Entry(url=identity.directory_url))
                if now < entry.next_fetch:
                    continue
                entry.next_fetch = now + self.min_refresh  # one fetch at a time per directory
            self.fetches += 1
            try:
                keys, refresh_in = self.fetch(identity.directory_url)
            except Exception as error:
                self.fetch_failures += 1
                with self._lock:
                    entry.failures += 1
                    entry.error = f"{error.__class__.__name__}: {error}"
                    backoff = min(self.max_refresh, self.min_refresh * 2 ** (entry.failures - 1))
                    entry.next_fetch = self._monotonic() + backoff
                log.warning(
                    "the key directory of %s could not be fetched from %s (%s); retrying in %.0f s",
                    identity.agent,
                    identity.directory_url,
                    entry.error,
                    backoff,
                )
                continue
            with self._lock:
                entry.keys, entry.error, entry.failures = keys, None, 0
                entry.fetched_at = self._monotonic()
                entry.next_fetch = entry.fetched_at + refresh_in

    def keys(self, identity: Identity) -> Mapping[str, Ed25519PublicKey] | None:
        """The identity's keys: pinned, or fetched and not older than ``max_stale``; None otherwise."""
        if identity.pinned is not None:
            return identity.pinned
        entry = self._entries.get(identity.directory_url)
        if entry is None or entry.keys is None:
            return None
        if self._monotonic() - entry.fetched_at > self.max_stale:
            return None
        return entry.keys

    def status(self, identity: Identity) -> str | None:
        """The last fetch error of the identity's directory, if any."""
        entry = self._entries.get(identity.directory_url)
        return entry.error if entry else None


# --- verification ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking a request's Web Bot Auth signature."""

    identity: Identity | None
    """The registered identity that signed the request; None when it is not validly signed."""
    reason: str
    """Why it is not ``signed`` (one of :data:`REASONS`), or ``"signed"``."""
    agent: str | None = None
    keyid: str | None = None
    replay_key: str | None = None
    expires: int = 0

    @property
    def ok(self) -> bool:
        """Whether the signature is valid (replay still to be checked by the caller)."""
        return self.identity is not None


@dataclass
class SignedRequest:
    """What the verifier needs of a request: method, URL and header fields (names lower-case)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class _Keys(HTTPSignatureKeyResolver):
    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = keys

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self._keys.get(key_id)

    def resolve_private_key(self, key_id: str) -> None:  # pragma: no cover - never signs
        raise NotImplementedError


class _Verifier(HTTPMessageVerifier):
    """The library's verifier with the time checks left to :class:`SignatureVerifier` (its clock)."""

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        return None


class IdentityIndex:
    """Registered identities by agent origin, with their key store."""

    def __init__(self, identities: Iterable[Identity] = (), keys: KeyStore | None = None) -> None:
        self.by_agent = {identity.agent: identity for identity in identities}
        self.keys = keys or KeyStore()
        self.organisations = frozenset(identity.organisation_id for identity in self.by_agent.values())

    def __len__(self) -> int:
        return len(self.by_agent)


def _fail(reason: str, **extra: Any) -> SignatureCheck:
    return SignatureCheck(None, reason, **extra)


class SignatureVerifier:
    """Checks Web Bot Auth signatures (see the module docstring).

    ``authorities``: the host names (with a port where not the default) this service answers as; a
    signature over another ``@authority`` is refused. None accepts the request's own ``Host``.
    ``skew``: seconds of clock difference allowed on ``created`` and ``expires``. ``fast``: check the
    usual Web Bot Auth shape directly (below), leaving every other case to the library; False leaves
    every case to the library.
    """

    def __init__(
        self,
        *,
        authorities: Iterable[str] | None = None,
        skew: int = 30,
        clock: Callable[[], float] = time.time,
        fast: bool = True,
    ) -> None:
        self.fast = fast
        self.authorities = frozenset(a.lower() for a in authorities) if authorities is not None else None
        self.skew = skew
        self.clock = clock

    @classmethod
    def for_service(cls, operator_url: str, *, skew: int = 30) -> SignatureVerifier:
        """A verifier accepting signatures over the authority of the service's public URL only."""
        parts = urlsplit(operator_url)
        if not parts.hostname:
            raise InvalidInput(f"{operator_url!r} has no host", field="operator_url")
        return cls(authorities=[parts.netloc.rpartition("@")[2]], skew=skew)

    def check(self, request: SignedRequest, index: IdentityIndex) -> SignatureCheck:
        """Check the request's ``web-bot-auth`` signature (not yet its nonce: see ``replay_key``)."""
        headers = request.headers
        raw_input, raw_signature = headers.get("signature-input"), headers.get("signature")
        if not raw_input or not raw_signature:
            return _fail("malformed-signature-input")
        fast = _fast_parse(raw_input, raw_signature) if self.fast else None
        signature_params: str | None = None
        signature: bytes | None = None
        if fast is not None:
            label, covered, params, signature_params, signature = fast
        else:
            try:
                inputs: Any = http_sf.parse(raw_input.encode("latin-1"), tltype="dictionary")
            except Exception:
                return _fail("malformed-signature-input")
            for name, (members, member_params) in inputs.items():
                if not isinstance(members, list):
                    return _fail("malformed-signature-input")
                if member_params.get("tag") == TAG:
                    label, params, covered = name, member_params, members
                    break
            else:
                return _fail("no-web-bot-auth-signature")
        keyid, created, expires = params.get("keyid"), params.get("created"), params.get("expires")
        if not isinstance(keyid, str):
            return _fail("malformed-signature-input")
        if params.get("alg", "ed25519") != "ed25519":
            return _fail("unsupported-algorithm", keyid=keyid)
        if type(created) is not int:
            return _fail("missing-created", keyid=keyid)
        if type(expires) is not int:
            return _fail("missing-expires", keyid=keyid)
        now = self.clock()
        if created > now + self.skew or expires < created:
            return _fail("created-in-future", keyid=keyid)
        if expires < now - self.skew:
            return _fail("expired", keyid=keyid)
        names = {(item, tuple(sorted(p.items()))) for item, p in covered if isinstance(item, str)}
        if not any(item == "@authority" and not p for item, p in names):
            return _fail("authority-not-covered", keyid=keyid)
        agent_params = [dict(p) for item, p in names if item == "signature-agent"]
        if not agent_params:
            return _fail("agent-not-covered", keyid=keyid)
        try:
            authority = (urlsplit(request.url).netloc or "").lower()
        except ValueError:
            return _fail("wrong-authority", keyid=keyid)
        if self.authorities is not None and authority not in self.authorities:
            return _fail("wrong-authority", keyid=keyid)
        agent_member = agent_params[0].get("key")
        agent = _agent(headers.get("signature-agent"), agent_member)
        if agent is None:
            return _fail("missing-signature-agent", keyid=keyid)
        identity = index.by_agent.get(agent)
        if identity is None:
            return _fail("unknown-agent", agent=agent, keyid=keyid)
        keys = index.keys.keys(identity)
        if keys is None:
            return _fail("directory-unavailable", agent=agent, keyid=keyid)
        if keyid not in keys:
            return _fail("unknown-key", agent=agent, keyid=keyid)
        if not (
            signature_params is not None
            and signature is not None
            and _fast_verify(
                keys[keyid], covered, signature_params, signature, authority, agent_member, headers
            )
        ):
            # anything the fast path does not cover, or does not accept, is decided by the library
            verifier = _Verifier(signature_algorithm=algorithms.ED25519, key_resolver=_Keys(keys))
            try:
                verifier.verify(request, expect_tag=TAG, expect_label=label, max_age=None)
            except (HTTPMessageSignaturesException, ValueError, TypeError, KeyError):
                return _fail("bad-signature", agent=agent, keyid=keyid)
        nonce = params.get("nonce")
        unique = nonce if isinstance(nonce, str) and nonce else _signature_identity(raw_signature, label)
        digest = hashlib.sha256(f"{agent}\n{keyid}\n{unique}".encode()).hexdigest()[:32]
        return SignatureCheck(identity, "signed", agent, keyid, digest, expires)


@lru_cache(maxsize=4096)
def _agent(header: str | None, member: object) -> str | None:
    """The agent origin named by ``Signature-Agent`` (a Dictionary member, or a bare String)."""
    if not header:
        return None
    value: object = None
    try:
        if isinstance(member, str):
            parsed: Any = http_sf.parse(header.encode("latin-1"), tltype="dictionary")
            value = parsed[member][0] if member in parsed else None
        else:
            item: Any = http_sf.parse(header.encode("latin-1"), tltype="item")
            value = item[0]
    except Exception:
        return None
    if not isinstance(value, str):
        return None
    try:
        return normalise_agent(value)
    except InvalidInput:
        return None


# --- the fast path -----------------------------------------------------------------------------------------
# Web Bot Auth requests carry one signature in canonical form over "@authority" and the Signature-Agent
# member. For that shape the signature base is rebuilt here from the raw fields and checked directly;
# a signature it does not accept (or any other shape) goes to the library, which decides.

_KEY = r"[a-z*][a-z0-9_\-.*]{0,63}"
_ITEM = r'"[a-z@][a-z0-9@\-]*"(?:;key="[a-zA-Z0-9_\-.*]+")?'
_PARAM = r'[a-z][a-z0-9_\-.*]*=(?:"[\x20-\x21\x23-\x5b\x5d-\x7e]*"|-?[0-9]{1,15})'
_FAST_INPUT = re.compile(rf"({_KEY})=(\((?:{_ITEM}(?: {_ITEM})*)?\)(?:;{_PARAM})*)")
_FAST_SIGNATURE = re.compile(rf"({_KEY})=:([A-Za-z0-9+/]+=*):")
_FAST_COVERED = re.compile(r'"([a-z@][a-z0-9@\-]*)"(?:;key="([a-zA-Z0-9_\-.*]+)")?')
_FAST_PARAMS = re.compile(r';([a-z][a-z0-9_\-.*]*)=(?:"([\x20-\x21\x23-\x5b\x5d-\x7e]*)"|(-?[0-9]{1,15}))')
_FAST_AGENT = re.compile(rf'({_KEY})="([\x20-\x21\x23-\x5b\x5d-\x7e]*)"')
_METADATA = frozenset({"alg", "created", "expires", "keyid", "nonce", "tag"})

Covered = list[tuple[str, dict[str, str]]]


def _signature_identity(raw_signature: str, label: str) -> str:
    """The bytes (hex) of the signature under ``label`` as the replay name of a request without a nonce:
    base64 texts that differ only in their pad bits, or other signatures beside it, leave it the same."""
    found = re.search(rf"(?:^|,)\s*{re.escape(label)}=:([A-Za-z0-9+/=]*):", raw_signature)
    if found is None:
        return raw_signature
    try:
        return base64.b64decode(found.group(1)).hex()
    except ValueError:
        return raw_signature


def _fast_parse(
    raw_input: str, raw_signature: str
) -> tuple[str, Covered, dict[str, str | int], str, bytes] | None:
    """One canonical signature: (label, covered, params, the ``@signature-params`` text, signature)."""
    found = _FAST_INPUT.fullmatch(raw_input)
    signed = _FAST_SIGNATURE.fullmatch(raw_signature)
    if found is None or signed is None or found.group(1) != signed.group(1):
        return None
    text = found.group(2)
    inner, _, _ = text[1:].partition(")")
    covered: Covered = [(name, {"key": key} if key else {}) for name, key in _FAST_COVERED.findall(inner)]
    params: dict[str, str | int] = {}
    for name, string, number in _FAST_PARAMS.findall(text[len(inner) + 2 :]):
        if name in params or name not in _METADATA:
            return None
        params[name] = string if number == "" else int(number)
    if params.get("tag") != TAG or len({(n, tuple(p.items())) for n, p in covered}) != len(covered):
        return None
    try:
        signature = base64.b64decode(signed.group(2), validate=True)
    except ValueError:
        return None
    return found.group(1), covered, params, text, signature


def _fast_verify(
    key: Ed25519PublicKey,
    covered: Covered,
    signature_params: str,
    signature: bytes,
    authority: str,
    agent_member: object,
    headers: Mapping[str, str],
) -> bool:
    """Whether ``signature`` verifies over the base of a request covering only the Web Bot Auth
    components; False when it does not, or when the request has another shape."""
    lines = []
    for name, params in covered:
        if name == "@authority" and not params:
            lines.append(f'"@authority": {authority}')
        elif name == "signature-agent" and isinstance(agent_member, str) and params == {"key": agent_member}:
            found = _FAST_AGENT.fullmatch(headers.get("signature-agent", ""))
            if found is None or found.group(1) != agent_member:
                return False
            lines.append(f'"signature-agent";key="{agent_member}": "{found.group(2)}"')
        else:
            return False
    lines.append(f'"@signature-params": {signature_params}')
    try:
        key.verify(signature, "\n".join(lines).encode("ascii"))
    except (InvalidSignatureError, UnicodeEncodeError):
        return False
    return True


def directory_url(agent: str) -> str:
    """The default key directory of an agent."""
    return normalise_agent(agent) + DIRECTORY_PATH
