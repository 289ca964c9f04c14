"""Realistic synthetic platform data in the data contract, fast enough for ten million posts.

``generate_lake`` writes every folder of :mod:`consentry.lake.schema`. Whole-table decisions (who posts how
often, when, what replies to what) are made on NumPy arrays; texts and Parquet files are produced in
chunks of at most a million rows, two chunks at a time on worker threads, so memory stays bounded. Each
chunk draws from its own random stream derived from ``(seed, stage, chunk)``: the same seed gives the
same bytes whatever the thread timing. Output goes to a hidden sibling folder that is renamed into place
only when complete. The shape (shares, rates, distributions) is the ``SHAPE`` constant, documented in
``docs/data-contract.md`` ("Generated data").
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consentry.errors import Conflict, InvalidInput
from consentry.lake import schema

if TYPE_CHECKING:
    from numpy.typing import NDArray

Progress = Callable[[str, int, int], None]
"""Called as ``progress(folder, rows_written, rows_total)`` on the calling thread after each chunk."""

MAX_ACCOUNTS = 50_000_000
MAX_POSTS = 200_000_000
MAX_SEED = 2**63 - 1

_US = 1_000_000
_HOUR = 3600 * _US
_DAY = 24 * _HOUR


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * _US


START = datetime(2019, 1, 1, tzinfo=UTC)
"""No generated timestamp is earlier."""
END = datetime(2026, 11, 1, tzinfo=UTC)
"""Every generated timestamp is earlier."""
ASSISTANT_LAUNCH = datetime(2023, 9, 1, tzinfo=UTC)
"""The assistant and its data-sharing controls ship: chats and consent events start here."""

_T0, _T1, _LAUNCH = _us(START), _us(END), _us(ASSISTANT_LAUNCH)

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

_CHUNK_ROWS = 1_000_000
_TEXT_CHUNK_ROWS = 500_000
_ROW_GROUP = 262_144
_WORKERS = 2
_POOL_PER_TOPIC = 2048

# stage numbers of the random streams (never reuse one: it would change every lake generated so far)
_S_ACCOUNTS, _S_POSTS, _S_POST_TEXT, _S_CHATS, _S_CHAT_TEXT, _S_BLOCKS, _S_FOLLOWS, _S_EVENTS, _S_POOL = (
    range(1, 10)
)

_ACTIVE, _DEACTIVATED, _DELETED = 0, 1, 2


# --------------------------------------------------------------------------------------------------
# Vocabulary: sentences are subject + verb + object + tail, a question or an opinion, all within one
# topic so that every combination reads as a plausible post.

_SUBJECTS = (
    "I", "We", "My sister", "My brother", "My roommate", "My best friend", "Our whole team", "My dad",
    "My mum", "The kids", "My partner", "Everyone at work", "My neighbour", "A friend of mine",
)  # fmt: skip
_TAILS = (
    "", "", "", " today", " this morning", " last night", " after work", " with friends", " again",
    " for the first time", " on the weekend", " yesterday", " with the family", " in the rain",
    " before breakfast", " and it was worth it", " and regret nothing", " and honestly loved it",
)  # fmt: skip
_ENDS = (".", ".", ".", "!", "!!", ". 10/10", " 😅", " 🙌")
_QUESTIONS = (
    "What do you all think of", "Who else is obsessed with", "Is it just me or is everyone talking about",
    "Anyone else excited about", "Thoughts on", "Can we talk about",
)  # fmt: skip
_OPINIONS = (
    ("Hot take: nothing beats", "."), ("Still thinking about", "."), ("Can't get enough of", "!"),
    ("Nothing makes me happier than", "."), ("Ten out of ten would recommend", "."),
    ("Honestly not sure about", "..."),
)  # fmt: skip

# topic: (verbs, objects, hashtags); every verb reads well with every object of its topic
_TOPICS: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("finally tried", "made", "can't stop thinking about", "fell in love with", "ordered", "shared"),
        ("homemade sourdough", "a spicy ramen", "lemon ricotta pancakes", "a huge bowl of pho",
         "vegan lasagna", "iced matcha lattes", "street tacos", "a homemade apple pie", "fresh dumplings",
         "a Neapolitan pizza", "shakshuka", "mango sticky rice"),
        ("#foodie", "#homecooking", "#brunch"),
    ),
    (
        ("just got back from", "finally booked a trip to", "can't stop thinking about", "fell in love with",
         "spent a week exploring", "still dream about"),
        ("Lisbon", "Kyoto", "the Scottish Highlands", "Mexico City", "a tiny village in the Alps",
         "Cape Town", "the Amalfi Coast", "Reykjavik", "Bali", "New Orleans", "Seoul", "the fjords"),
        ("#travel", "#wanderlust", "#travelgram"),
    ),
    (
        ("watched", "stayed up late for", "can't stop talking about", "missed", "finally got tickets for",
         "screamed through"),
        ("the derby", "last night's match", "the cup final", "the playoff game", "the marathon",
         "the penalty shootout", "the season opener", "the away game", "the semi-final", "the Grand Prix"),
        ("#matchday", "#football", "#f1"),
    ),
    (
        ("listened to", "can't stop playing", "cried a little at", "danced in the kitchen to",
         "finally bought", "discovered"),
        ("the new album", "that song from the ad", "an old jazz record", "a playlist of 90s hits",
         "the new single", "a vinyl reissue of a classic", "the live version of my favourite song"),
        ("#nowplaying", "#music", "#vinyl"),
    ),
    (
        ("finally set up", "spent all weekend fixing", "upgraded", "gave up on", "broke",
         "wrote a long thread about"),
        ("my home server", "the new phone", "an old laptop", "the smart thermostat",
         "a Raspberry Pi project", "the office printer", "my mechanical keyboard", "the Wi-Fi router",
         "a side project in Rust", "my password manager"),
        ("#tech", "#homelab", "#programming"),
    ),
    (
        ("spent the afternoon with", "took a hundred photos of", "cuddled", "bought a new bed for",
         "finally met", "laughed for hours at"),
        ("a rescue puppy", "the neighbour's cat", "two tiny kittens", "an old greyhound",
         "a very loud parrot", "our dog", "a hamster named Toast"),
        ("#dogsoftwitter", "#catsofinstagram", "#adoptdontshop"),
    ),
    (
        ("binge-watched", "finally watched", "fell asleep during", "rewatched", "can't stop talking about",
         "cried at the end of"),
        ("the season finale", "that new sci-fi series", "an old Kurosawa film",
         "the documentary everyone recommends", "the latest superhero movie", "a cheesy holiday movie",
         "the anime my cousin loves", "the true-crime show"),
        ("#movienight", "#bingewatching", "#film"),
    ),
    (
        ("finished", "couldn't put down", "started", "recommended", "reread", "borrowed"),
        ("a thriller from the library", "the book club pick", "a classic Russian novel",
         "the new fantasy trilogy", "a memoir about climbing", "a short story collection",
         "a graphic novel", "a poetry collection"),
        ("#amreading", "#booktok", "#bookclub"),
    ),
    (
        ("finished", "survived", "signed up for", "trained all month for", "skipped", "finally completed"),
        ("a 10k run", "a three-hour hike", "the morning yoga class", "a spin class", "a half marathon",
         "leg day", "a cold swim in the lake", "a climbing session"),
        ("#running", "#fitness", "#hiking"),
    ),
    (
        ("complained about", "survived", "laughed about", "sat through", "ranted about",
         "barely made it through"),
        ("the Monday meeting", "the morning commute", "a train delay", "the new open-plan office",
         "another all-hands", "the quarterly review", "the traffic on the bridge", "a twelve-hour shift"),
        ("#mondays", "#worklife", "#commute"),
    ),
    (
        ("planted", "harvested", "finally repotted", "watered", "took photos of", "worried about"),
        ("the tomatoes", "a row of sunflowers", "our first zucchini", "the basil on the balcony",
         "a tiny lemon tree", "the herb garden", "some very stubborn roses", "the strawberries"),
        ("#gardening", "#growyourown", "#plantsofinstagram"),
    ),
    (
        ("finally beat", "spent all night on", "gave up on", "replayed", "got hooked on", "streamed"),
        ("the final boss", "a cozy farming game", "the new open-world RPG", "an old Nintendo classic",
         "the ranked ladder", "a co-op puzzle game", "the new expansion", "a retro arcade game"),
        ("#gaming", "#indiegames", "#gamer"),
    ),
)  # fmt: skip

_REPLY_OPENERS = (
    "Totally agree.", "Same here!", "Ha, so true.", "Wait, really?", "Congrats!", "This made my day.",
    "Hard disagree.", "Love this.", "Where was this?", "Thanks for sharing!", "Oh no.",
    "Couldn't agree more.",
)  # fmt: skip
_QUOTE_OPENERS = (
    "This.", "Worth a read.", "Couldn't have said it better.", "Look at this 👇", "Adding my two cents:",
    "Saving this for later.", "Exactly what I said yesterday.",
)  # fmt: skip
_EMAIL_FRAMES = (
    ("Reach me at", "."), ("DM me or email", " for details."), ("Questions? Write to", "."),
    ("Send your photos to", "!"), ("My new address is", ", update your contacts."),
)  # fmt: skip
_PHONE_FRAMES = (
    ("Call me on", "."), ("Text", " if you want a spot."), ("Bookings:", "."), ("New number:", ", save it!"),
    ("WhatsApp", " for the tickets."),
)  # fmt: skip
_PROMPTS = (
    ("Can you recommend something like", "?"), ("Write a short post about", "."),
    ("Summarise what people are saying about", "."), ("Give me three tips for enjoying", "."),
    ("Explain why everyone is talking about", "."), ("Draft a funny caption for a photo of", "."),
    ("What should I know about", "?"),
)  # fmt: skip
_PII_PROMPTS = (
    ("My email is {}, can you draft a reply to my landlord?"),
    ("Write a flyer for my bake sale, contact {}."),
    ("Can you remember my number {} for later?"),
)
_ANSWER_OPENERS = ("Sure!", "Good question.", "Here you go.", "Happy to help.", "Great idea.", "Of course.")
_ANSWERS = (
    "It depends a lot on your budget and how much time you have.",
    "Many people find it helps to start small and build from there.",
    "Reviews are mostly positive, although opinions vary.",
    "Here is a short draft you can adapt to your own voice.",
    "A good first step is to check what is available near you.",
    "Keep it short, friendly and specific.",
    "Most people mention the atmosphere more than anything else.",
    "If you are unsure, ask a friend who has tried it before.",
    "You might also enjoy something similar with a different twist.",
    "Timing matters, so plan ahead if you can.",
    "The key points are quality, price and convenience.",
    "Let me know if you want a longer version.",
    "I can also suggest a few alternatives if that helps.",
    "People on the platform seem to love it, especially on weekends.",
    "Try to avoid the busiest hours if you can.",
    "A little preparation goes a long way here.",
    "There are plenty of beginner-friendly options.",
    "Feel free to change the tone to match your style.",
    "Remember to take breaks and enjoy the process.",
    "That should give you a solid starting point.",
)
_FIRST_NAMES = (
    "anna", "lukas", "sofia", "mateo", "emma", "noah", "mia", "leon", "chloe", "hugo", "giulia", "marco",
    "lucia", "pablo", "eva", "jan", "zofia", "lars", "ingrid", "aoife", "liam", "olivia", "james",
    "amelia", "priya", "arjun", "yuki", "haruto", "mina", "jiwoo", "ana", "joao", "camila", "diego",
    "fatima", "omar", "amara", "kwame", "chen", "wei", "sara", "ali", "nina", "felix", "clara", "theo",
    "ella", "max", "isla", "rafael", "lea", "tom", "kai", "zoe", "maya", "leila", "ivan", "olga", "elif",
    "can",
)  # fmt: skip
_LAST_NAMES = (
    "smith", "mueller", "rossi", "garcia", "martin", "dubois", "kowalski", "jansen", "nielsen", "murphy",
    "silva", "santos", "sato", "suzuki", "kim", "park", "patel", "sharma", "khan", "nguyen", "wang",
    "lopez", "hernandez", "fischer", "weber", "bernard", "ferrari", "novak", "horvat", "andersson",
    "virtanen", "oconnor", "walsh", "costa", "moreau", "schmidt", "meyer", "bianchi", "romero", "torres",
    "yilmaz", "demir", "okafor", "mensah", "hassan", "cohen", "levi", "brown", "taylor", "wilson", "jones",
    "davies", "evans", "ito", "tanaka", "zhang", "singh", "ricci", "lambert", "berg",
)  # fmt: skip
_HANDLE_SEPARATORS = ("_", "", ".", "_")
_EMAIL_DOMAINS = (
    "gmail.com", "outlook.com", "yahoo.com", "proton.me", "web.de", "gmx.de", "orange.fr", "libero.it",
    "hotmail.co.uk", "icloud.com",
)  # fmt: skip


# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateStats:
    """What ``generate_lake`` wrote: rows and files per folder, bytes, wall time and measured shape."""

    path: Path
    rows: dict[str, int]
    files: int
    bytes: int
    seconds: float
    shape: dict[str, float] = field(default_factory=dict)


def _check_arguments(out: Path, accounts: int, posts: int, seed: int) -> None:
    for name, value, low, high in (
        ("accounts", accounts, 10, MAX_ACCOUNTS),
        ("posts", posts, 0, MAX_POSTS),
        ("seed", seed, 0, MAX_SEED),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{name} must be an integer, got {value!r}", field=name)
        if not low <= value <= high:
            raise InvalidInput(f"{name} must be between {low:,} and {high:,}, got {value:,}", field=name)
    if out.exists():
        if not out.is_dir():
            raise InvalidInput(f"{out} exists and is not a folder", field="out")
        if any(out.iterdir()):
            raise Conflict(f"{out} already exists and is not empty; choose a new folder", field="out")


def generate_lake(
    out: Path,
    *,
    accounts: int,
    posts: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> GenerateStats:
    """Write a synthetic lake of ``accounts`` accounts and ``posts`` posts (plus chats, follows, blocks
    and consent events) to ``out``; nothing appears at ``out`` unless generation completes."""
    out = Path(out)
    _check_arguments(out, accounts, posts, seed)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="lake")
    try:
        generator = _Generator(
            staging, accounts=accounts, posts=posts, seed=seed, pool=pool, progress=progress
        )
        generator.run()
        pool.shutdown(wait=True)
        try:
            os.replace(staging, out)
        except OSError as error:
            raise Conflict(f"could not move the lake into {out}: {error}", field="out") from error
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = sorted(out.rglob("*.parquet"))
    return GenerateStats(
        path=out,
        rows=generator.rows,
        files=len(files),
        bytes=sum(path.stat().st_size for path in files),
        seconds=time.perf_counter() - started,
        shape=generator.shape,
    )


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _strings(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _take(values: pa.Array, indices: NDArray[Any], mask: NDArray[np.bool_] | None = None) -> pa.Array:
    """``values[indices]`` as an Arrow array, null where ``mask`` is true."""
    return pc.take(values, pa.array(indices, mask=mask))


def _join(parts: Sequence[Any], separator: str) -> pa.Array:
    """Row-wise concatenation; null parts are skipped (with their separator)."""
    return pc.binary_join_element_wise(*parts, separator, null_handling="skip")


def _scatter(values: pa.Array, where: NDArray[np.bool_]) -> pa.Array:
    """An array as long as ``where``: the next item of ``values`` where true, null elsewhere."""
    positions = np.cumsum(where) - 1
    return _take(values, np.maximum(positions, 0), ~where)


def _timestamps(values: NDArray[np.int64], missing: NDArray[np.bool_] | None = None) -> pa.Array:
    return pa.array(values, type=schema.TIMESTAMP, mask=missing)


def _year(moments: NDArray[np.int64]) -> NDArray[np.int64]:
    seconds = (moments // _US).astype("datetime64[s]")
    return seconds.astype("datetime64[Y]").astype(np.int64) + 1970


def _uniform_between(
    rng: np.random.Generator, low: NDArray[np.int64], high: NDArray[np.int64]
) -> NDArray[np.int64]:
    """One random moment in ``[low, high)`` per row (``high > low``)."""
    return low + (rng.random(low.size) * (high - low)).astype(np.int64)


def _delay(rng: np.random.Generator, median_seconds: float, sigma: float, size: int) -> NDArray[np.int64]:
    """Lognormal delays in microseconds, capped at ten years."""
    seconds = np.minimum(rng.lognormal(np.log(median_seconds), sigma, size), 10 * 365 * 86400)
    return (seconds * _US).astype(np.int64)


def _strictly_increasing(values: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sorted values nudged by microseconds so that no two are equal."""
    steps = np.arange(values.size, dtype=np.int64)
    return np.maximum.accumulate(values - steps) + steps


def _distinct(values: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sorted distinct values (a sort is much faster than ``np.unique``'s hashing for int64 keys)."""
    values = np.sort(values)
    keep = np.ones(values.size, dtype=np.bool_)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _weighted(rng: np.random.Generator, weights: NDArray[np.float64], size: int) -> NDArray[np.int64]:
    """``size`` indices drawn with probability proportional to ``weights``."""
    cumulative = np.cumsum(weights)
    picks: NDArray[np.int64] = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(picks, weights.size - 1)


class _Vocabulary:
    """Arrow arrays of the word lists, and the pool of topic sentences every text is built from."""

    def __init__(self, seed: int) -> None:
        self.first_names = _strings(_FIRST_NAMES)
        self.last_names = _strings(_LAST_NAMES)
        self.separators = _strings(_HANDLE_SEPARATORS)
        self.domains = _strings(_EMAIL_DOMAINS)
        self.hashtags = _strings([tag for _, _, tags in _TOPICS for tag in tags[:3]])
        self.openers = _strings(_REPLY_OPENERS + _QUOTE_OPENERS)
        self.answer_openers = _strings(_ANSWER_OPENERS)
        self.answers = _strings(_ANSWERS)
        self.email_frames = (_strings([a for a, _ in _EMAIL_FRAMES]), _strings([b for _, b in _EMAIL_FRAMES]))
        self.phone_frames = (_strings([a for a, _ in _PHONE_FRAMES]), _strings([b for _, b in _PHONE_FRAMES]))
        self.prompt_frames = (_strings([a for a, _ in _PROMPTS]), _strings([b for _, b in _PROMPTS]))
        self.objects = [_strings(objects) for _, objects, _ in _TOPICS]
        self.sentences = self._pool(_rng(seed, _S_POOL))

    def _pool(self, rng: np.random.Generator) -> pa.Array:
        size = _POOL_PER_TOPIC
        subjects, tails, ends = _strings(_SUBJECTS), _strings(_TAILS), _strings(_ENDS)
        questions = _strings(_QUESTIONS)
        opinion_heads, opinion_ends = _strings([a for a, _ in _OPINIONS]), _strings([b for _, b in _OPINIONS])
        chunks = []
        for (verbs, objects, _), object_array in zip(_TOPICS, self.objects, strict=True):
            obj = _take(object_array, rng.integers(0, len(objects), size))
            subject = _take(subjects, rng.integers(0, len(_SUBJECTS), size))
            verb = _take(_strings(verbs), rng.integers(0, len(verbs), size))
            tail = _take(tails, rng.integers(0, len(_TAILS), size))
            end = _take(ends, rng.integers(0, len(_ENDS), size))
            statement = _join([_join([subject, verb, obj], " "), tail, end], "")
            question = _join(
                [_join([_take(questions, rng.integers(0, len(_QUESTIONS), size)), obj], " "), "?"], ""
            )
            which = rng.integers(0, len(_OPINIONS), size)
            opinion = _join([_join([_take(opinion_heads, which), obj], " "), _take(opinion_ends, which)], "")
            form = np.searchsorted([0.65, 0.85], rng.random(size), side="right").astype(np.int8)
            chunks.append(pc.choose(pa.array(form), statement, question, opinion))
        return pa.concat_arrays(chunks)

    def sentences_for(
        self, rng: np.random.Generator, topic: NDArray[np.int64], mask: NDArray[np.bool_] | None = None
    ) -> pa.Array:
        """One sentence of the given topic per row (null where ``mask``)."""
        index = topic * _POOL_PER_TOPIC + rng.integers(0, _POOL_PER_TOPIC, topic.size)
        return _take(self.sentences, index, mask)

    def emails(self, rng: np.random.Generator, size: int) -> pa.Array:
        """Plausible personal e-mail addresses."""
        number = pc.cast(pa.array(rng.integers(1, 100, size), mask=rng.random(size) < 0.5), pa.string())
        return _join(
            [
                _take(self.first_names, rng.integers(0, len(_FIRST_NAMES), size)),
                _take(self.separators, rng.integers(0, len(_HANDLE_SEPARATORS), size)),
                _take(self.last_names, rng.integers(0, len(_LAST_NAMES), size)),
                number,
                "@",
                _take(self.domains, rng.integers(0, len(_EMAIL_DOMAINS), size)),
            ],
            "",
        )

    def phones(self, rng: np.random.Generator, size: int) -> pa.Array:
        """Phone numbers in US, UK, German and French formats."""

        def digits(width: int) -> pa.Array:
            return pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**width, size)), pa.string()), width, "0")

        area = pc.cast(pa.array(rng.integers(201, 990, size)), pa.string())
        formats = [
            _join(["+1", area, _join([digits(3), digits(4)], "-")], " "),
            _join(["(", area, ") ", digits(3), "-", digits(4)], ""),
            _join(["+44 7", digits(3), " ", digits(6)], ""),
            _join(["+49 15", digits(1), " ", digits(8)], ""),
            _join(["+33 6", digits(2), digits(2), digits(2), digits(2)], " "),
        ]
        return pc.choose(pa.array(rng.integers(0, len(formats), size).astype(np.int8)), *formats)

    def personal_data(self, rng: np.random.Generator, rows: int) -> pa.Array:
        """For each row: null, or a sentence giving an e-mail address or a phone number."""
        kind = np.searchsorted([SHAPE.email_share, SHAPE.email_share + SHAPE.phone_share], rng.random(rows))
        email, phone = kind == 0, kind == 1
        emails = self._framed(rng, self.email_frames, self.emails(rng, int(email.sum())))
        phones = self._framed(rng, self.phone_frames, self.phones(rng, int(phone.sum())))
        return pc.coalesce(_scatter(emails, email), _scatter(phones, phone))

    @staticmethod
    def _framed(rng: np.random.Generator, frames: tuple[pa.Array, pa.Array], values: pa.Array) -> pa.Array:
        which = rng.integers(0, len(frames[0]), len(values))
        return _join([_join([_take(frames[0], which), values], " "), _take(frames[1], which)], "")


@dataclass
class _Accounts:
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
        return int(self.created.size)


@dataclass
class _Posts:
    author: NDArray[np.int32]
    created: NDArray[np.int64]
    parent: NDArray[np.int32]  # index of the post replied to, -1 if none
    quoted: NDArray[np.int32]  # index of the post quoted, -1 if none
    deleted: NDArray[np.int64]  # -1 if live
    visibility: NDArray[np.int8]
    media: NDArray[np.int8]


@dataclass
class _Chats:
    account: NDArray[np.int64]
    created: NDArray[np.int64]
    deleted: NDArray[np.int64]


class _Generator:
    def __init__(
        self,
        root: Path,
        *,
        accounts: int,
        posts: int,
        seed: int,
        pool: ThreadPoolExecutor,
        progress: Progress | None,
    ) -> None:
        self.root = root
        self.accounts = accounts
        self.posts = posts
        self.seed = seed
        self.pool = pool
        self.progress = progress
        self.rows: dict[str, int] = {}
        self.shape: dict[str, float] = {}

    def run(self) -> None:
        vocabulary = _Vocabulary(self.seed)
        accounts = self._make_accounts(vocabulary)
        self._write_accounts(accounts)
        posts = self._make_posts(accounts)
        self._write_posts(accounts, posts, vocabulary)
        del posts
        chats = self._make_chats(accounts)
        self._write_chats(accounts, chats, vocabulary)
        del chats
        blocks = self._make_blocks(accounts)
        self._write_pairs(schema.BLOCKS, *blocks)
        follows = self._make_follows(accounts, blocks)
        del blocks
        self._write_pairs(schema.FOLLOWS, *follows)
        del follows
        self._write_events(*self._make_events(accounts))

    # --- writing -----------------------------------------------------------------------------------

    def _report(self, folder: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(folder, done, total)

    def _write(
        self,
        folder: schema.Folder,
        total: int,
        build: Callable[[int, int, int], list[pa.Array]],
        *,
        chunk_rows: int = _CHUNK_ROWS,
        dictionary: Sequence[str] = (),
    ) -> None:
        """Build and write ``[start, stop)`` chunks of a folder on the worker threads, one file each."""
        directory = self.root / folder.name
        directory.mkdir()
        chunks = [
            (index, start, min(start + chunk_rows, total))
            for index, start in enumerate(range(0, total, chunk_rows))
        ]
        chunks = chunks or [(0, 0, 0)]

        def write(index: int, start: int, stop: int) -> int:
            table = pa.Table.from_arrays(build(index, start, stop), schema=folder.schema)
            pq.write_table(
                table,
                directory / f"part-{index:05d}.parquet",
                row_group_size=_ROW_GROUP,
                compression="zstd",
                use_dictionary=list(dictionary),
            )
            return int(table.num_rows)

        self._report(folder.name, 0, total)
        futures: list[Future[int]] = [self.pool.submit(write, *chunk) for chunk in chunks]
        done = 0
        for future in futures:
            done += future.result()
            self._report(folder.name, done, total)
        self.rows[folder.name] = done

    # --- accounts ----------------------------------------------------------------------------------

    def _make_accounts(self, vocabulary: _Vocabulary) -> _Accounts:
        n, rng = self.accounts, _rng(self.seed, _S_ACCOUNTS)
        # sign-ups grow over time; ids follow creation order
        created = np.sort(_T0 + (rng.random(n) ** 0.75 * (_T1 - 7 * _DAY - _T0)).astype(np.int64))

        weights = np.array(
            [
                w / sum(REGULATED_COUNTRIES.values()) * SHAPE.regulated_share
                for w in REGULATED_COUNTRIES.values()
            ]
            + [
                w / sum(OTHER_COUNTRIES.values()) * (1 - SHAPE.regulated_share)
                for w in OTHER_COUNTRIES.values()
            ]
        )
        country = _weighted(rng, weights, n)
        regulated = country < len(REGULATED_COUNTRIES)

        # adults: age in 2026 of 19 and over, at least 13 when signing up; minors: born 2008 or later,
        # chosen among accounts created in 2021 or later so that they were 13 at sign-up
        created_year = _year(created)
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
        status = np.array([_DEACTIVATED, _DELETED, _ACTIVE], dtype=np.int8)[status_draw]
        changed = _uniform_between(rng, created + _HOUR, np.full(n, _T1 - _HOUR))
        end = np.where(status == _ACTIVE, _T1, changed)

        lurker = rng.random(n) < SHAPE.lurker_share
        rate = rng.lognormal(0.0, SHAPE.activity_sigma, n)
        activity = np.where(lurker, 0.0, rate * (end - created) / _DAY)
        popularity = (np.sqrt(rate) + 0.1) * rng.lognormal(0.0, 1.0, n)

        ids = pc.cast(pa.array(np.arange(1, n + 1)), pa.string())
        handles = _join(
            [
                _take(vocabulary.first_names, rng.integers(0, len(_FIRST_NAMES), n)),
                _take(vocabulary.separators, rng.integers(0, len(_HANDLE_SEPARATORS), n)),
                _take(vocabulary.last_names, rng.integers(0, len(_LAST_NAMES), n)),
                ids,
            ],
            "",
        )
        privacy = rng.random(n) < np.where(regulated, 1.8, 1.0) * SHAPE.privacy_minded_share
        accounts = _Accounts(
            created=created,
            end=end,
            status=status,
            country=country,
            regulated=regulated,
            birth_year=birth_year.astype(np.int16),
            birth_unknown=birth_unknown,
            protected=rng.random(n) < SHAPE.protected_share,
            topic=rng.integers(0, len(_TOPICS), n),
            privacy_minded=privacy,
            activity=activity,
            popularity=popularity,
            handles=handles,
        )
        self.shape.update(
            regulated=float(regulated.mean()),
            protected=float(accounts.protected.mean()),
            minors=float(((2026 - birth_year <= 18) & ~birth_unknown).mean()),
            unknown_birth_year=float(birth_unknown.mean()),
            inactive=float((status != _ACTIVE).mean()),
        )
        return accounts

    def _write_accounts(self, accounts: _Accounts) -> None:
        statuses = _strings(schema.ACCOUNT_STATUSES)
        countries = _strings([*REGULATED_COUNTRIES, *OTHER_COUNTRIES])

        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            part = slice(start, stop)
            status = accounts.status[part]
            return [
                pa.array(np.arange(start + 1, stop + 1, dtype=np.int64)),
                accounts.handles[start:stop],
                _timestamps(accounts.created[part]),
                _take(countries, accounts.country[part]),
                pa.array(accounts.birth_year[part], mask=accounts.birth_unknown[part]),
                pa.array(accounts.protected[part]),
                _take(statuses, status),
                _timestamps(accounts.end[part], status == _ACTIVE),
            ]

        self._write(schema.ACCOUNTS, accounts.size, build, dictionary=("country", "status"))

    # --- posts -------------------------------------------------------------------------------------

    def _make_posts(self, accounts: _Accounts) -> _Posts:
        m, rng = self.posts, _rng(self.seed, _S_POSTS)
        weights = accounts.activity if accounts.activity.sum() > 0 else np.ones(accounts.size)
        counts = rng.multinomial(m, weights / weights.sum())
        author = np.repeat(np.arange(accounts.size, dtype=np.int32), counts)
        created = _uniform_between(
            rng, accounts.created[author] + _US, accounts.end[author] - 2 * _US
        )  # a post is written while its author's account is active
        order = np.argsort(created, kind="stable")
        created = _strictly_increasing(created[order])
        author = author[order]
        del order

        # deletions: a few percent of posts by their authors, and every post of a deleted account
        deleted = np.where(
            rng.random(m) < SHAPE.deleted_post_share,
            np.minimum(created + _delay(rng, 3 * 86400, 2.0, m) + _US, _T1 - _US),
            -1,
        )
        gone = accounts.status[author] == _DELETED
        account_end = accounts.end[author]
        deleted = np.where(gone & ((deleted < 0) | (deleted > account_end)), account_end, deleted)

        kind = rng.random(m)
        is_reply = kind < SHAPE.reply_share
        is_quote = (kind >= SHAPE.reply_share) & (kind < SHAPE.reply_share + SHAPE.quote_share)
        parent = self._earlier(rng, created, deleted, is_reply, median_seconds=2 * 3600)
        quoted = self._earlier(rng, created, deleted, is_quote, median_seconds=86400)

        media_draw = rng.random(m)
        media = (media_draw >= 1 - SHAPE.image_share - SHAPE.video_share).astype(np.int8) + (
            media_draw >= 1 - SHAPE.video_share
        )
        visibility = (rng.random(m) < SHAPE.followers_only_share).astype(np.int8)

        top = np.sort(counts)[::-1][: max(1, accounts.size // 10)].sum()
        self.shape.update(
            deleted_posts=float((deleted >= 0).mean()) if m else 0.0,
            replies=float((parent >= 0).mean()) if m else 0.0,
            quotes=float((quoted >= 0).mean()) if m else 0.0,
            followers_only=float(visibility.mean()) if m else 0.0,
            top_decile_posts=float(top / m) if m else 0.0,
        )
        return _Posts(author, created, parent, quoted, deleted, visibility, media.astype(np.int8))

    @staticmethod
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
        delay = _delay(rng, median_seconds, 1.8, rows.size)
        target = np.searchsorted(created, created[rows] - delay, side="right") - 1
        target = np.clip(target, 0, rows - 1)
        # nobody answers a post that was already deleted
        parent_deleted = deleted[target]
        alive = (parent_deleted < 0) | (parent_deleted > created[rows])
        link[rows[alive]] = target[alive]
        return link

    def _write_posts(self, accounts: _Accounts, posts: _Posts, vocabulary: _Vocabulary) -> None:
        mentions = _join(["@", accounts.handles], "")
        visibilities, media_kinds = _strings(schema.POST_VISIBILITIES), _strings(schema.MEDIA_KINDS)
        reply_openers, quote_openers = len(_REPLY_OPENERS), len(_QUOTE_OPENERS)

        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            rng, part, n = _rng(self.seed, _S_POST_TEXT, index), slice(start, stop), stop - start
            author, parent, quoted = posts.author[part], posts.parent[part], posts.quoted[part]
            reply, quote = parent >= 0, quoted >= 0
            topic = np.where(rng.random(n) < 0.7, accounts.topic[author], rng.integers(0, len(_TOPICS), n))
            second = rng.random(n) < np.where(reply, 0.25, 0.5)
            third = second & (rng.random(n) < 0.35)
            opener = np.where(
                reply, rng.integers(0, reply_openers, n), reply_openers + rng.integers(0, quote_openers, n)
            )
            with_opener = (reply & (rng.random(n) < 0.7)) | (quote & (rng.random(n) < 0.8))
            hashtag = topic * 3 + rng.integers(0, 3, n)
            text = _join(
                [
                    _take(mentions, posts.author[np.maximum(parent, 0)], ~reply),
                    _take(vocabulary.openers, opener, ~with_opener),
                    vocabulary.sentences_for(rng, topic),
                    vocabulary.sentences_for(rng, topic, ~second),
                    vocabulary.sentences_for(rng, topic, ~third),
                    vocabulary.personal_data(rng, n),
                    _take(vocabulary.hashtags, hashtag, rng.random(n) >= 0.12),
                ],
                " ",
            )
            deleted = posts.deleted[part]
            return [
                pa.array(np.arange(start + 1, stop + 1, dtype=np.int64)),
                pa.array(author.astype(np.int64) + 1),
                _timestamps(posts.created[part]),
                text,
                _take(visibilities, posts.visibility[part]),
                pa.array(parent.astype(np.int64) + 1, mask=~reply),
                pa.array(quoted.astype(np.int64) + 1, mask=~quote),
                _take(media_kinds, posts.media[part]),
                _timestamps(deleted, deleted < 0),
            ]

        self._write(
            schema.POSTS, self.posts, build, chunk_rows=_TEXT_CHUNK_ROWS, dictionary=("visibility", "media")
        )

    # --- assistant interactions --------------------------------------------------------------------

    def _make_chats(self, accounts: _Accounts) -> _Chats:
        rng = _rng(self.seed, _S_CHATS)
        eligible = np.flatnonzero(accounts.end > _LAUNCH + _DAY)
        chatters = np.sort(
            rng.choice(
                eligible, min(eligible.size, round(SHAPE.chatter_share * accounts.size)), replace=False
            )
        )
        per_chatter = 1 + rng.lognormal(np.log(2.0), 1.2, chatters.size).astype(np.int64)
        account = np.repeat(chatters, per_chatter)
        created = _uniform_between(
            rng, np.maximum(accounts.created[account], _LAUNCH) + _US, accounts.end[account] - 2 * _US
        )
        order = np.argsort(created, kind="stable")
        account, created = account[order], _strictly_increasing(created[order])
        size = created.size
        deleted = np.where(
            rng.random(size) < SHAPE.deleted_chat_share,
            np.minimum(created + _delay(rng, 86400, 2.0, size) + _US, _T1 - _US),
            -1,
        )
        gone = accounts.status[account] == _DELETED
        account_end = accounts.end[account]
        deleted = np.where(gone & ((deleted < 0) | (deleted > account_end)), account_end, deleted)
        self.shape["chatters"] = chatters.size / accounts.size
        return _Chats(account, created, deleted)

    def _write_chats(self, accounts: _Accounts, chats: _Chats, vocabulary: _Vocabulary) -> None:
        heads, tails = vocabulary.prompt_frames
        pii_heads = _strings([frame.split("{}")[0] for frame in _PII_PROMPTS])
        pii_tails = _strings([frame.split("{}")[1] for frame in _PII_PROMPTS])
        objects = pa.concat_arrays(vocabulary.objects)
        sizes = np.array([len(array) for array in vocabulary.objects])
        offsets = np.cumsum(sizes) - sizes

        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            rng, part, n = _rng(self.seed, _S_CHAT_TEXT, index), slice(start, stop), stop - start
            account = chats.account[part]
            topic = np.where(rng.random(n) < 0.7, accounts.topic[account], rng.integers(0, len(_TOPICS), n))
            frame = rng.integers(0, len(_PROMPTS), n)
            subject = _take(objects, offsets[topic] + (rng.random(n) * sizes[topic]).astype(np.int64))
            prompt = _join([_join([_take(heads, frame), subject], " "), _take(tails, frame)], "")
            # a few prompts hand the assistant an e-mail address (first two frames) or a phone number
            has_pii = rng.random(n) < SHAPE.email_share + SHAPE.phone_share
            size = int(has_pii.sum())
            email = rng.random(size) < SHAPE.email_share / (SHAPE.email_share + SHAPE.phone_share)
            which = np.where(email, rng.integers(0, 2, size), 2)
            personal = pc.coalesce(
                _scatter(vocabulary.emails(rng, int(email.sum())), email),
                _scatter(vocabulary.phones(rng, int((~email).sum())), ~email),
            )
            pii = _join([_take(pii_heads, which), personal, _take(pii_tails, which)], "")
            prompt = pc.coalesce(_scatter(pii, has_pii), prompt)
            example = pc.if_else(
                pa.array(rng.random(n) < 0.5),
                _join(['For example: "', vocabulary.sentences_for(rng, topic), '"'], ""),
                pa.scalar(None, pa.string()),
            )
            response = _join(
                [
                    _take(vocabulary.answer_openers, rng.integers(0, len(_ANSWER_OPENERS), n)),
                    _take(vocabulary.answers, rng.integers(0, len(_ANSWERS), n)),
                    example,
                    _take(vocabulary.answers, rng.integers(0, len(_ANSWERS), n)),
                    _take(vocabulary.answers, rng.integers(0, len(_ANSWERS), n), rng.random(n) < 0.5),
                ],
                " ",
            )
            deleted = chats.deleted[part]
            return [
                pa.array(np.arange(start + 1, stop + 1, dtype=np.int64)),
                pa.array(account.astype(np.int64) + 1),
                _timestamps(chats.created[part]),
                prompt,
                response,
                _timestamps(deleted, deleted < 0),
            ]

        self._write(
            schema.ASSISTANT_INTERACTIONS, int(chats.created.size), build, chunk_rows=_TEXT_CHUNK_ROWS
        )

    # --- blocks and follows ------------------------------------------------------------------------

    def _pairs(
        self,
        rng: np.random.Generator,
        accounts: _Accounts,
        source: NDArray[np.int64],
        target: NDArray[np.int64],
        exclude: NDArray[np.int64] | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Distinct (source, target) pairs without self-pairs, excluded keys or deleted accounts, each
        with a moment when both accounts were active; sorted by source then target."""
        n = accounts.size
        keys = source * n + target
        keys = _distinct(keys[source != target])
        if exclude is not None and exclude.size:
            at = np.minimum(np.searchsorted(exclude, keys), exclude.size - 1)
            keys = keys[exclude[at] != keys]
        source, target = keys // n, keys % n
        low = np.maximum(accounts.created[source], accounts.created[target]) + _US
        high = np.minimum(accounts.end[source], accounts.end[target]) - _US
        # a deleted account's relations are gone; a deactivated account's are kept
        possible = (
            (high > low) & (accounts.status[source] != _DELETED) & (accounts.status[target] != _DELETED)
        )
        source, target, low, high = source[possible], target[possible], low[possible], high[possible]
        return source, target, _uniform_between(rng, low, high)

    def _make_blocks(
        self, accounts: _Accounts
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        rng, n = _rng(self.seed, _S_BLOCKS), accounts.size
        blockers = rng.choice(n, round(SHAPE.blocker_share * n), replace=False)
        blocker = np.repeat(blockers, rng.geometric(0.45, blockers.size))
        blocked = _weighted(rng, accounts.popularity, blocker.size)  # prominent accounts draw more blocks
        return self._pairs(rng, accounts, blocker, blocked)

    def _make_follows(
        self, accounts: _Accounts, blocks: tuple[NDArray[np.int64], ...]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        rng, n = _rng(self.seed, _S_FOLLOWS), accounts.size
        degree = np.minimum(
            rng.lognormal(np.log(SHAPE.follows_median), 1.3, n).astype(np.int64), min(n - 1, 5000)
        )
        total = int(degree.sum())
        follower = np.repeat(np.arange(n, dtype=np.int64), degree)
        in_degree = rng.multinomial(total, accounts.popularity / accounts.popularity.sum())
        followee = np.repeat(np.arange(n, dtype=np.int64), in_degree)
        rng.shuffle(followee)
        blocker, blocked, _ = blocks
        exclude = _distinct(np.concatenate([blocker * n + blocked, blocked * n + blocker]))
        follows = self._pairs(rng, accounts, follower, followee, exclude)
        self.shape["follows_per_account"] = follows[0].size / n
        return follows

    def _write_pairs(
        self,
        folder: schema.Folder,
        source: NDArray[np.int64],
        target: NDArray[np.int64],
        moment: NDArray[np.int64],
    ) -> None:
        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            part = slice(start, stop)
            return [pa.array(source[part] + 1), pa.array(target[part] + 1), _timestamps(moment[part])]

        self._write(folder, int(source.size), build, chunk_rows=2 * _CHUNK_ROWS)

    # --- consent events ----------------------------------------------------------------------------

    def _make_events(
        self, accounts: _Accounts
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int8], NDArray[np.int8], NDArray[np.int8]]:
        """Explicit choices per (account, setting): a first choice, sometimes flipped again and again."""
        rng, n = _rng(self.seed, _S_EVENTS), accounts.size
        low = np.maximum(accounts.created, _LAUNCH) + _US
        high = accounts.end - _US
        open_window = high - low > 3600 * _US
        # privacy-minded people deny every setting in one session, seconds apart
        session = _uniform_between(rng, low, np.maximum(high - 60 * _US, low + 1))
        per_setting = []
        for number in range(len(schema.SETTING_KEYS)):
            p_deny = np.where(accounts.regulated, SHAPE.deny_regulated[number], SHAPE.deny_elsewhere[number])
            p_allow = np.where(
                accounts.regulated, SHAPE.allow_regulated[number], SHAPE.allow_elsewhere[number]
            )
            p_deny = np.where(accounts.privacy_minded, 0.9, p_deny)
            p_allow = np.where(accounts.privacy_minded, 0.01, p_allow)
            draw = rng.random(n)
            first_deny = draw < p_deny
            has = (first_deny | (draw < p_deny + p_allow)) & open_window
            flips = np.where(rng.random(n) < SHAPE.toggle_share, rng.integers(1, 6, n), 0)
            count = np.where(has, 1 + flips, 0)
            first = np.where(
                accounts.privacy_minded & first_deny,
                session + number * 7 * _US,
                _uniform_between(rng, low, high),
            )
            account = np.repeat(np.arange(n, dtype=np.int64), count)
            position = np.arange(account.size) - np.repeat(np.cumsum(count) - count, count)
            start = first[account]
            later = _uniform_between(rng, start, np.maximum(high[account], start + 1))
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
        adult = ~accounts.birth_unknown[account] & (_year(moment) - accounts.birth_year[account] > 18)
        third_party = setting == schema.SETTING_KEYS.index("third_party_sharing")
        gpc = third_party & deny & was_allow & adult & (rng.random(account.size) < SHAPE.gpc_share)
        # an explicit choice made after a GPC event stands: GPC records nothing again in that history
        seen = np.cumsum(gpc) - gpc
        first_of_history = np.arange(account.size) - position
        gpc &= seen == seen[first_of_history]
        source: NDArray[np.int8] = np.where(gpc, np.int8(4), client).astype(np.int8)

        order = np.lexsort((setting, account, moment))
        self.shape["events_per_account"] = account.size / n
        self.shape["gpc_events"] = float(gpc.sum())
        value: NDArray[np.int8] = deny[order].astype(np.int8)
        return account[order], moment[order], setting[order], source[order], value

    def _write_events(
        self,
        account: NDArray[np.int64],
        moment: NDArray[np.int64],
        setting: NDArray[np.int8],
        source: NDArray[np.int8],
        deny: NDArray[np.int8],
    ) -> None:
        settings, values = _strings(schema.SETTING_KEYS), _strings(schema.CONSENT_VALUES)
        sources = _strings(schema.CONSENT_SOURCES)

        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            part = slice(start, stop)
            return [
                pa.array(account[part] + 1),
                _take(settings, setting[part]),
                _take(values, deny[part]),
                _take(sources, source[part]),
                _timestamps(moment[part]),
            ]

        self._write(
            schema.CONSENT_EVENTS,
            int(account.size),
            build,
            chunk_rows=2 * _CHUNK_ROWS,
            dictionary=("setting", "value", "source"),
        )
