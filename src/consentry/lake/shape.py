"""The shape of generated data and the array helpers the generator builds it from.

Time is in microseconds since the epoch (``SECOND``, ``HOUR``, ``DAY``); every random draw comes from a
stream of ``(seed, stage, chunk)`` (``stream``), so the same seed gives the same lake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from consentry.lake import schema

if TYPE_CHECKING:
    from numpy.typing import NDArray

SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR


def micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (whole seconds)."""
    return int(moment.timestamp()) * SECOND


START = datetime(2019, 1, 1, tzinfo=UTC)
"""No generated timestamp is earlier."""
END = datetime(2026, 11, 1, tzinfo=UTC)
"""Every generated timestamp is earlier."""
ASSISTANT_LAUNCH = datetime(2023, 9, 1, tzinfo=UTC)
"""The assistant and its data-sharing controls ship: chats and consent events start here."""

T0, T1, LAUNCH = micros(START), micros(END), micros(ASSISTANT_LAUNCH)

# Countries: the EEA (EU 27 plus IS, LI, NO), the UK and Switzerland (defaults deny) and the rest of the
# world (defaults allow). Relative weights inside each group; ``Shape.regulated_share`` splits them.
REGULATED_COUNTRIES: dict[str, float] = {
    "DE": 6.0, "FR": 4.6, "IT": 3.2, "ES": 3.4, "NL": 1.9, "PL": 2.2, "SE": 1.0, "BE": 0.9, "AT": 0.7,
    "IE": 0.7, "DK": 0.5, "FI": 0.5, "PT": 0.8, "CZ": 0.6, "RO": 0.7, "GR": 0.6, "HU": 0.4, "SK": 0.2,
    "BG": 0.2, "HR": 0.15, "SI": 0.1, "LT": 0.1, "LV": 0.08, "EE": 0.07, "LU": 0.05, "CY": 0.05,
    "MT": 0.03, "NO": 0.5, "IS": 0.03, "LI": 0.01, "GB": 4.5, "CH": 0.7,
}  # fmt: skip
OTHER_COUNTRIES: dict[str, float] = {
    "US": 22.0, "IN": 9.0, "BR": 7.0, "JP": 6.0, "ID": 4.0, "MX": 3.5, "CA": 2.5, "TR": 2.5, "PH": 2.5,
    "KR": 2.0, "AR": 1.5, "AU": 1.5, "NG": 1.5, "TH": 1.5, "ZA": 1.0, "EG": 1.0, "CO": 1.0, "VN": 1.0,
    "SA": 1.0, "MY": 0.8, "CL": 0.8, "PK": 0.8, "UA": 0.8, "PE": 0.6, "TW": 0.6, "KE": 0.5, "AE": 0.5,
    "SG": 0.4, "IL": 0.4, "MA": 0.4, "NZ": 0.3, "RS": 0.2,
}  # fmt: skip


@dataclass(frozen=True)
class Shape:
    """The documented shape of generated data (shares are of accounts unless named otherwise)."""

    regulated_share: float = 0.30  # accounts in EEA/UK/CH countries
    protected_share: float = 0.08
    minor_share: float = 0.04  # 2026 - birth_year <= 18
    null_birth_year_share: float = 0.01
    deactivated_share: float = 0.006
    deleted_share: float = 0.004
    lurker_share: float = 0.25  # accounts that never post
    activity_sigma: float = 2.0  # lognormal spread of posting rates
    reply_share: float = 0.25  # of posts
    quote_share: float = 0.04  # of posts
    followers_only_share: float = 0.06  # of posts
    image_share: float = 0.20  # of posts
    video_share: float = 0.06  # of posts
    deleted_post_share: float = 0.03  # of posts, besides the posts of deleted accounts
    email_share: float = 0.015  # of posts and prompts containing an e-mail address
    phone_share: float = 0.01  # of posts and prompts containing a phone number
    chatter_share: float = 0.20  # accounts with assistant chats
    deleted_chat_share: float = 0.05  # of chats
    blocker_share: float = 0.03
    follows_median: float = 3.5  # lognormal out-degree
    privacy_minded_share: float = 0.10  # deny every setting in one session (x1.8 in EEA/UK/CH)
    toggle_share: float = 0.05  # of (account, setting) histories that flip again one to five times
    gpc_share: float = 0.40  # of third_party_sharing denies that could come from GPC
    # first explicit choice per setting (order of schema.SETTING_KEYS): deny and allow probabilities
    deny_elsewhere: tuple[float, ...] = (0.10, 0.12, 0.05, 0.16)
    allow_elsewhere: tuple[float, ...] = (0.02, 0.02, 0.02, 0.01)
    deny_regulated: tuple[float, ...] = (0.18, 0.20, 0.10, 0.24)
    allow_regulated: tuple[float, ...] = (0.12, 0.08, 0.22, 0.04)


SHAPE = Shape()

# stage numbers of the random streams (never reuse one: it would change every lake generated so far)
S_ACCOUNTS, S_POSTS, S_POST_TEXT, S_CHATS, S_CHAT_TEXT, S_BLOCKS, S_FOLLOWS, S_EVENTS, S_POOL = range(1, 10)

ACTIVE, DEACTIVATED, DELETED = 0, 1, 2


def stream(seed: int, *key: int) -> np.random.Generator:
    """The random stream of ``(seed, *key)``, independent of every other key."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def strings(values: Sequence[str]) -> pa.Array:
    """An Arrow string array of ``values``."""
    return pa.array(list(values), type=pa.string())


def take(values: pa.Array, indices: NDArray[Any], mask: NDArray[np.bool_] | None = None) -> pa.Array:
    """``values[indices]`` as an Arrow array, null where ``mask`` is true."""
    return pc.take(values, pa.array(indices, mask=mask))


def join_rows(parts: Sequence[Any], separator: str) -> pa.Array:
    """Row-wise concatenation; null parts are skipped (with their separator)."""
    return pc.binary_join_element_wise(*parts, separator, null_handling="skip")


def scatter(values: pa.Array, where: NDArray[np.bool_]) -> pa.Array:
    """An array as long as ``where``: the next item of ``values`` where true, null elsewhere."""
    positions = np.cumsum(where) - 1
    return take(values, np.maximum(positions, 0), ~where)


def timestamps(values: NDArray[np.int64], missing: NDArray[np.bool_] | None = None) -> pa.Array:
    """Microsecond moments as the contract's timestamp column, null where ``missing``."""
    return pa.array(values, type=schema.TIMESTAMP, mask=missing)


def year_of(moments: NDArray[np.int64]) -> NDArray[np.int64]:
    """The UTC calendar year of each moment."""
    seconds = (moments // SECOND).astype("datetime64[s]")
    return seconds.astype("datetime64[Y]").astype(np.int64) + 1970


def uniform_between(
    rng: np.random.Generator, low: NDArray[np.int64], high: NDArray[np.int64]
) -> NDArray[np.int64]:
    """One random moment in ``[low, high)`` per row (``high > low``)."""
    return low + (rng.random(low.size) * (high - low)).astype(np.int64)


def lognormal_delay(
    rng: np.random.Generator, median_seconds: float, sigma: float, size: int
) -> NDArray[np.int64]:
    """Lognormal delays in microseconds, capped at ten years."""
    seconds = np.minimum(rng.lognormal(np.log(median_seconds), sigma, size), 10 * 365 * 86400)
    return (seconds * SECOND).astype(np.int64)


def strictly_increasing(values: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sorted values nudged by microseconds so that no two are equal."""
    steps = np.arange(values.size, dtype=np.int64)
    return np.maximum.accumulate(values - steps) + steps


def distinct(values: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sorted distinct values (a sort is much faster than ``np.unique``'s hashing for int64 keys)."""
    values = np.sort(values)
    keep = np.ones(values.size, dtype=np.bool_)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def weighted(rng: np.random.Generator, weights: NDArray[np.float64], size: int) -> NDArray[np.int64]:
    """``size`` indices drawn with probability proportional to ``weights``."""
    cumulative = np.cumsum(weights)
    picks: NDArray[np.int64] = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(picks, weights.size - 1)


@dataclass
class Accounts:
    """Every account's decided facts (index = account id - 1)."""

    created: NDArray[np.int64]
    end: NDArray[np.int64]  # status_changed_at for inactive accounts, END otherwise
    status: NDArray[np.int8]
    country: NDArray[np.int64]
    regulated: NDArray[np.bool_]
    birth_year: NDArray[np.int16]
    birth_unknown: NDArray[np.bool_]
    protected: NDArray[np.bool_]
    topic: NDArray[np.int64]
    privacy_minded: NDArray[np.bool_]
    activity: NDArray[np.float64]
    popularity: NDArray[np.float64]
    handles: pa.Array

    @property
    def size(self) -> int:
        """How many accounts."""
        return int(self.created.size)


@dataclass
class Posts:
    """Every post's decided facts, in time order (index = post id - 1)."""

    author: NDArray[np.int32]
    created: NDArray[np.int64]
    parent: NDArray[np.int32]  # index of the post replied to, -1 if none
    quoted: NDArray[np.int32]  # index of the post quoted, -1 if none
    deleted: NDArray[np.int64]  # -1 if live
    visibility: NDArray[np.int8]
    media: NDArray[np.int8]


@dataclass
class Chats:
    """Every assistant chat's account and times, in time order."""

    account: NDArray[np.int64]
    created: NDArray[np.int64]
    deleted: NDArray[np.int64]
