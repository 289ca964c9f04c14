"""Who the generated platform's people are and what they do, decided on whole NumPy arrays: accounts,
posts and what they reply to or quote, assistant chats, blocks and follows, and consent choices. Texts
are written later, chunk by chunk (``consentry.lake.generate``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from consentry.lake import schema
from consentry.lake.shape import (
    ACTIVE,
    DAY,
    DEACTIVATED,
    DELETED,
    HOUR,
    LAUNCH,
    OTHER_COUNTRIES,
    REGULATED_COUNTRIES,
    S_ACCOUNTS,
    S_BLOCKS,
    S_CHATS,
    S_EVENTS,
    S_FOLLOWS,
    S_POSTS,
    SECOND,
    SHAPE,
    T0,
    T1,
    Accounts,
    Chats,
    Posts,
    distinct,
    join_rows,
    lognormal_delay,
    stream,
    strictly_increasing,
    take,
    uniform_between,
    weighted,
    year_of,
)
from consentry.lake.vocabulary import FIRST_NAMES, HANDLE_SEPARATORS, LAST_NAMES, TOPICS, Vocabulary

Pairs = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]
"""(source, target, moment) of blocks or follows."""


def make_accounts(n: int, *, seed: int, vocabulary: Vocabulary, shape: dict[str, float]) -> Accounts:
    """``n`` accounts: sign-up times, countries, birth years, statuses, activity and popularity, handles
    (the measured shares go to ``shape``)."""
    rng = stream(seed, S_ACCOUNTS)
    # sign-ups grow over time; ids follow creation order
    created = np.sort(T0 + (rng.random(n) ** 0.75 * (T1 - 7 * DAY - T0)).astype(np.int64))

    weights = np.array(
        [w / sum(REGULATED_COUNTRIES.values()) * SHAPE.regulated_share for w in REGULATED_COUNTRIES.values()]
        + [w / sum(OTHER_COUNTRIES.values()) * (1 - SHAPE.regulated_share) for w in OTHER_COUNTRIES.values()]
    )
    country = weighted(rng, weights, n)
    regulated = country < len(REGULATED_COUNTRIES)

    # adults: age in 2026 of 19 and over, at least 13 when signing up; minors: born 2008 or later,
    # chosen among accounts created in 2021 or later so that they were 13 at sign-up
    created_year = year_of(created)
    birth_year = 2026 - 19 - np.minimum(rng.gamma(2.0, 9.0, n).astype(np.int64), 76)
    birth_year = np.minimum(birth_year, created_year - 13)
    eligible = np.flatnonzero(created_year >= 2021)
    minors = rng.choice(eligible, min(eligible.size, round(SHAPE.minor_share * n)), replace=False)
    birth_year[minors] = rng.integers(2008, created_year[minors] - 12)
    birth_unknown = rng.random(n) < SHAPE.null_birth_year_share

    status_draw = np.searchsorted(
        [SHAPE.deactivated_share, SHAPE.deactivated_share + SHAPE.deleted_share],
        rng.random(n),
        side="right",
    )
    status = np.array([DEACTIVATED, DELETED, ACTIVE], dtype=np.int8)[status_draw]
    changed = uniform_between(rng, created + HOUR, np.full(n, T1 - HOUR))
    end = np.where(status == ACTIVE, T1, changed)

    lurker = rng.random(n) < SHAPE.lurker_share
    rate = rng.lognormal(0.0, SHAPE.activity_sigma, n)
    activity = np.where(lurker, 0.0, rate * (end - created) / DAY)
    popularity = (np.sqrt(rate) + 0.1) * rng.lognormal(0.0, 1.0, n)

    ids = pc.cast(pa.array(np.arange(1, n + 1)), pa.string())
    handles = join_rows(
        [
            take(vocabulary.first_names, rng.integers(0, len(FIRST_NAMES), n)),
            take(vocabulary.separators, rng.integers(0, len(HANDLE_SEPARATORS), n)),
            take(vocabulary.last_names, rng.integers(0, len(LAST_NAMES), n)),
            ids,
        ],
        "",
    )
    privacy = rng.random(n) < np.where(regulated, 1.8, 1.0) * SHAPE.privacy_minded_share
    accounts = Accounts(
        created=created,
        end=end,
        status=status,
        country=country,
        regulated=regulated,
        birth_year=birth_year.astype(np.int16),
        birth_unknown=birth_unknown,
        protected=rng.random(n) < SHAPE.protected_share,
        topic=rng.integers(0, len(TOPICS), n),
        privacy_minded=privacy,
        activity=activity,
        popularity=popularity,
        handles=handles,
    )
    shape.update(
        regulated=float(regulated.mean()),
        protected=float(accounts.protected.mean()),
        minors=float(((2026 - birth_year <= 18) & ~birth_unknown).mean()),
        unknown_birth_year=float(birth_unknown.mean()),
        inactive=float((status != ACTIVE).mean()),
    )
    return accounts


def make_posts(m: int, *, seed: int, accounts: Accounts, shape: dict[str, float]) -> Posts:
    """``m`` posts: authors by activity, times, deletions, replies and quotes, media and audience."""
    rng = stream(seed, S_POSTS)
    weights = accounts.activity if accounts.activity.sum() > 0 else np.ones(accounts.size)
    counts = rng.multinomial(m, weights / weights.sum())
    author = np.repeat(np.arange(accounts.size, dtype=np.int32), counts)
    created = uniform_between(
        rng, accounts.created[author] + SECOND, accounts.end[author] - 2 * SECOND
    )  # a post is written while its author's account is active
    order = np.argsort(created, kind="stable")
    created = strictly_increasing(created[order])
    author = author[order]
    del order

    # deletions: a few percent of posts by their authors, and every post of a deleted account
    deleted = np.where(
        rng.random(m) < SHAPE.deleted_post_share,
        np.minimum(created + lognormal_delay(rng, 3 * 86400, 2.0, m) + SECOND, T1 - SECOND),
        -1,
    )
    gone = accounts.status[author] == DELETED
    account_end = accounts.end[author]
    deleted = np.where(gone & ((deleted < 0) | (deleted > account_end)), account_end, deleted)

    kind = rng.random(m)
    is_reply = kind < SHAPE.reply_share
    is_quote = (kind >= SHAPE.reply_share) & (kind < SHAPE.reply_share + SHAPE.quote_share)
    parent = _earlier(rng, created, deleted, is_reply, median_seconds=2 * 3600)
    quoted = _earlier(rng, created, deleted, is_quote, median_seconds=86400)

    media_draw = rng.random(m)
    media = (media_draw >= 1 - SHAPE.image_share - SHAPE.video_share).astype(np.int8) + (
        media_draw >= 1 - SHAPE.video_share
    )
    visibility = (rng.random(m) < SHAPE.followers_only_share).astype(np.int8)

    top = np.sort(counts)[::-1][: max(1, accounts.size // 10)].sum()
    shape.update(
        deleted_posts=float((deleted >= 0).mean()) if m else 0.0,
        replies=float((parent >= 0).mean()) if m else 0.0,
        quotes=float((quoted >= 0).mean()) if m else 0.0,
        followers_only=float(visibility.mean()) if m else 0.0,
        top_decile_posts=float(top / m) if m else 0.0,
    )
    return Posts(author, created, parent, quoted, deleted, visibility, media.astype(np.int8))


def _earlier(
    rng: np.random.Generator,
    created: NDArray[np.int64],
    deleted: NDArray[np.int64],
    chosen: NDArray[np.bool_],
    *,
    median_seconds: float,
) -> NDArray[np.int32]:
    """For chosen posts, an earlier post written about a lognormal delay before (else -1)."""
    link = np.full(created.size, -1, dtype=np.int32)
    rows = np.flatnonzero(chosen)
    rows = rows[rows > 0]
    delay = lognormal_delay(rng, median_seconds, 1.8, rows.size)
    target = np.searchsorted(created, created[rows] - delay, side="right") - 1
    target = np.clip(target, 0, rows - 1)
    # nobody answers a post that was already deleted
    parent_deleted = deleted[target]
    alive = (parent_deleted < 0) | (parent_deleted > created[rows])
    link[rows[alive]] = target[alive]
    return link


def make_chats(*, seed: int, accounts: Accounts, shape: dict[str, float]) -> Chats:
    """Assistant chats of a share of the accounts active after the launch, some deleted since."""
    rng = stream(seed, S_CHATS)
    eligible = np.flatnonzero(accounts.end > LAUNCH + DAY)
    chatters = np.sort(
        rng.choice(eligible, min(eligible.size, round(SHAPE.chatter_share * accounts.size)), replace=False)
    )
    per_chatter = 1 + rng.lognormal(np.log(2.0), 1.2, chatters.size).astype(np.int64)
    account = np.repeat(chatters, per_chatter)
    created = uniform_between(
        rng, np.maximum(accounts.created[account], LAUNCH) + SECOND, accounts.end[account] - 2 * SECOND
    )
    order = np.argsort(created, kind="stable")
    account, created = account[order], strictly_increasing(created[order])
    size = created.size
    deleted = np.where(
        rng.random(size) < SHAPE.deleted_chat_share,
        np.minimum(created + lognormal_delay(rng, 86400, 2.0, size) + SECOND, T1 - SECOND),
        -1,
    )
    gone = accounts.status[account] == DELETED
    account_end = accounts.end[account]
    deleted = np.where(gone & ((deleted < 0) | (deleted > account_end)), account_end, deleted)
    shape["chatters"] = chatters.size / accounts.size
    return Chats(account, created, deleted)


def _pairs(
    rng: np.random.Generator,
    accounts: Accounts,
    source: NDArray[np.int64],
    target: NDArray[np.int64],
    exclude: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Distinct (source, target) pairs without self-pairs, excluded keys or deleted accounts, each
    with a moment when both accounts were active; sorted by source then target."""
    n = accounts.size
    keys = source * n + target
    keys = distinct(keys[source != target])
    if exclude is not None and exclude.size:
        at = np.minimum(np.searchsorted(exclude, keys), exclude.size - 1)
        keys = keys[exclude[at] != keys]
    source, target = keys // n, keys % n
    low = np.maximum(accounts.created[source], accounts.created[target]) + SECOND
    high = np.minimum(accounts.end[source], accounts.end[target]) - SECOND
    # a deleted account's relations are gone; a deactivated account's are kept
    possible = (high > low) & (accounts.status[source] != DELETED) & (accounts.status[target] != DELETED)
    source, target, low, high = source[possible], target[possible], low[possible], high[possible]
    return source, target, uniform_between(rng, low, high)


def make_blocks(*, seed: int, accounts: Accounts) -> Pairs:
    """Blocks: a few accounts block one or more others, prominent accounts more often."""
    rng, n = stream(seed, S_BLOCKS), accounts.size
    blockers = rng.choice(n, round(SHAPE.blocker_share * n), replace=False)
    blocker = np.repeat(blockers, rng.geometric(0.45, blockers.size))
    blocked = weighted(rng, accounts.popularity, blocker.size)  # prominent accounts draw more blocks
    return _pairs(rng, accounts, blocker, blocked)


def make_follows(*, seed: int, accounts: Accounts, blocks: Pairs, shape: dict[str, float]) -> Pairs:
    """Follows: lognormal out-degrees, followees by popularity, never across a block."""
    rng, n = stream(seed, S_FOLLOWS), accounts.size
    degree = np.minimum(
        rng.lognormal(np.log(SHAPE.follows_median), 1.3, n).astype(np.int64), min(n - 1, 5000)
    )
    total = int(degree.sum())
    follower = np.repeat(np.arange(n, dtype=np.int64), degree)
    in_degree = rng.multinomial(total, accounts.popularity / accounts.popularity.sum())
    followee = np.repeat(np.arange(n, dtype=np.int64), in_degree)
    rng.shuffle(followee)
    blocker, blocked, _ = blocks
    exclude = distinct(np.concatenate([blocker * n + blocked, blocked * n + blocker]))
    follows = _pairs(rng, accounts, follower, followee, exclude)
    shape["follows_per_account"] = follows[0].size / n
    return follows


def make_events(
    *, seed: int, accounts: Accounts, shape: dict[str, float]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int8], NDArray[np.int8], NDArray[np.int8]]:
    """Explicit choices per (account, setting): a first choice, sometimes flipped again and again."""
    rng, n = stream(seed, S_EVENTS), accounts.size
    low = np.maximum(accounts.created, LAUNCH) + SECOND
    high = accounts.end - SECOND
    open_window = high - low > 3600 * SECOND
    # privacy-minded people deny every setting in one session, seconds apart
    session = uniform_between(rng, low, np.maximum(high - 60 * SECOND, low + 1))
    per_setting = []
    for number in range(len(schema.SETTING_KEYS)):
        p_deny = np.where(accounts.regulated, SHAPE.deny_regulated[number], SHAPE.deny_elsewhere[number])
        p_allow = np.where(accounts.regulated, SHAPE.allow_regulated[number], SHAPE.allow_elsewhere[number])
        p_deny = np.where(accounts.privacy_minded, 0.9, p_deny)
        p_allow = np.where(accounts.privacy_minded, 0.01, p_allow)
        draw = rng.random(n)
        first_deny = draw < p_deny
        has = (first_deny | (draw < p_deny + p_allow)) & open_window
        flips = np.where(rng.random(n) < SHAPE.toggle_share, rng.integers(1, 6, n), 0)
        count = np.where(has, 1 + flips, 0)
        first = np.where(
            accounts.privacy_minded & first_deny,
            session + number * 7 * SECOND,
            uniform_between(rng, low, high),
        )
        account = np.repeat(np.arange(n, dtype=np.int64), count)
        position = np.arange(account.size) - np.repeat(np.cumsum(count) - count, count)
        start = first[account]
        later = uniform_between(rng, start, np.maximum(high[account], start + 1))
        moment = np.where(position == 0, start, later)
        order = np.lexsort((moment, account))
        account, moment = account[order], moment[order]
        # values alternate from the first choice, in time order
        position = np.arange(account.size) - np.searchsorted(account, account)
        value_deny = first_deny[account] ^ (position % 2 == 1)
        per_setting.append(
            (account, np.full(account.size, number, dtype=np.int8), value_deny, moment, position)
        )

    account = np.concatenate([part[0] for part in per_setting])
    setting = np.concatenate([part[1] for part in per_setting])
    deny = np.concatenate([part[2] for part in per_setting])
    moment = np.concatenate([part[3] for part in per_setting])
    position = np.concatenate([part[4] for part in per_setting])

    # sources: clients by usage; a third_party_sharing deny may come from Global Privacy Control when
    # the setting was effectively allow just before (default allow outside EEA/UK/CH, or an explicit
    # allow), the account holder is an adult with a known birth year, and the history holds no GPC
    # event yet (DESIGN.md, "Global Privacy Control")
    clients = np.array([0, 1, 2, 3, 5], dtype=np.int8)  # web ios android api admin
    client = clients[np.searchsorted([0.40, 0.68, 0.94, 0.98], rng.random(account.size), side="right")]
    was_allow = np.where(position == 0, ~accounts.regulated[account], True)
    adult = ~accounts.birth_unknown[account] & (year_of(moment) - accounts.birth_year[account] > 18)
    third_party = setting == schema.SETTING_KEYS.index("third_party_sharing")
    gpc = third_party & deny & was_allow & adult & (rng.random(account.size) < SHAPE.gpc_share)
    # an explicit choice made after a GPC event stands: GPC records nothing again in that history
    seen = np.cumsum(gpc) - gpc
    first_of_history = np.arange(account.size) - position
    gpc &= seen == seen[first_of_history]
    source: NDArray[np.int8] = np.where(gpc, np.int8(4), client).astype(np.int8)

    order = np.lexsort((setting, account, moment))
    shape["events_per_account"] = account.size / n
    shape["gpc_events"] = float(gpc.sum())
    value: NDArray[np.int8] = deny[order].astype(np.int8)
    return account[order], moment[order], setting[order], source[order], value
