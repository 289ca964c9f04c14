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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from consentry.errors import Conflict, InvalidInput
from consentry.lake import schema
from consentry.lake.population import (
    make_accounts,
    make_blocks,
    make_chats,
    make_events,
    make_follows,
    make_posts,
)
from consentry.lake.shape import (
    ACTIVE,
    ASSISTANT_LAUNCH,
    END,
    OTHER_COUNTRIES,
    REGULATED_COUNTRIES,
    S_CHAT_TEXT,
    S_POST_TEXT,
    SHAPE,
    START,
    Accounts,
    Chats,
    Posts,
    Shape,
    join_rows,
    scatter,
    stream,
    strings,
    take,
    timestamps,
)
from consentry.lake.vocabulary import (
    ANSWER_OPENERS,
    ANSWERS,
    PII_PROMPTS,
    PROMPTS,
    QUOTE_OPENERS,
    REPLY_OPENERS,
    TOPICS,
    Vocabulary,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "ASSISTANT_LAUNCH",
    "END",
    "MAX_ACCOUNTS",
    "MAX_POSTS",
    "MAX_SEED",
    "OTHER_COUNTRIES",
    "REGULATED_COUNTRIES",
    "SHAPE",
    "START",
    "GenerateStats",
    "Progress",
    "Shape",
    "generate_lake",
]

Progress = Callable[[str, int, int], None]
"""Called as ``progress(folder, rows_written, rows_total)`` on the calling thread after each chunk."""

MAX_ACCOUNTS = 50_000_000
MAX_POSTS = 200_000_000
MAX_SEED = 2**63 - 1

_CHUNK_ROWS = 1_000_000
_TEXT_CHUNK_ROWS = 500_000
_ROW_GROUP = 262_144
_WORKERS = 2


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


class _Generator:
    """Writes the folders of one lake: the decisions come from ``population``, the texts from
    ``vocabulary``, chunk by chunk on the pool's threads."""

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
        """Decide and write every folder, one after the other (each decision's arrays freed after)."""
        seed, shape = self.seed, self.shape
        vocabulary = Vocabulary(seed)
        accounts = make_accounts(self.accounts, seed=seed, vocabulary=vocabulary, shape=shape)
        self._write_accounts(accounts)
        posts = make_posts(self.posts, seed=seed, accounts=accounts, shape=shape)
        self._write_posts(accounts, posts, vocabulary)
        del posts
        chats = make_chats(seed=seed, accounts=accounts, shape=shape)
        self._write_chats(accounts, chats, vocabulary)
        del chats
        blocks = make_blocks(seed=seed, accounts=accounts)
        self._write_pairs(schema.BLOCKS, *blocks)
        follows = make_follows(seed=seed, accounts=accounts, blocks=blocks, shape=shape)
        del blocks
        self._write_pairs(schema.FOLLOWS, *follows)
        del follows
        self._write_events(*make_events(seed=seed, accounts=accounts, shape=shape))

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

    def _write_accounts(self, accounts: Accounts) -> None:
        statuses = strings(schema.ACCOUNT_STATUSES)
        countries = strings([*REGULATED_COUNTRIES, *OTHER_COUNTRIES])

        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            part = slice(start, stop)
            status = accounts.status[part]
            return [
                pa.array(np.arange(start + 1, stop + 1, dtype=np.int64)),
                accounts.handles[start:stop],
                timestamps(accounts.created[part]),
                take(countries, accounts.country[part]),
                pa.array(accounts.birth_year[part], mask=accounts.birth_unknown[part]),
                pa.array(accounts.protected[part]),
                take(statuses, status),
                timestamps(accounts.end[part], status == ACTIVE),
            ]

        self._write(schema.ACCOUNTS, accounts.size, build, dictionary=("country", "status"))

    # --- posts -------------------------------------------------------------------------------------

    def _write_posts(self, accounts: Accounts, posts: Posts, vocabulary: Vocabulary) -> None:
        mentions = join_rows(["@", accounts.handles], "")
        visibilities, media_kinds = strings(schema.POST_VISIBILITIES), strings(schema.MEDIA_KINDS)
        reply_openers, quote_openers = len(REPLY_OPENERS), len(QUOTE_OPENERS)

        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            rng, part, n = stream(self.seed, S_POST_TEXT, index), slice(start, stop), stop - start
            author, parent, quoted = posts.author[part], posts.parent[part], posts.quoted[part]
            reply, quote = parent >= 0, quoted >= 0
            topic = np.where(rng.random(n) < 0.7, accounts.topic[author], rng.integers(0, len(TOPICS), n))
            second = rng.random(n) < np.where(reply, 0.25, 0.5)
            third = second & (rng.random(n) < 0.35)
            opener = np.where(
                reply, rng.integers(0, reply_openers, n), reply_openers + rng.integers(0, quote_openers, n)
            )
            with_opener = (reply & (rng.random(n) < 0.7)) | (quote & (rng.random(n) < 0.8))
            hashtag = topic * 3 + rng.integers(0, 3, n)
            text = join_rows(
                [
                    take(mentions, posts.author[np.maximum(parent, 0)], ~reply),
                    take(vocabulary.openers, opener, ~with_opener),
                    vocabulary.sentences_for(rng, topic),
                    vocabulary.sentences_for(rng, topic, ~second),
                    vocabulary.sentences_for(rng, topic, ~third),
                    vocabulary.personal_data(rng, n),
                    take(vocabulary.hashtags, hashtag, rng.random(n) >= 0.12),
                ],
                " ",
            )
            deleted = posts.deleted[part]
            return [
                pa.array(np.arange(start + 1, stop + 1, dtype=np.int64)),
                pa.array(author.astype(np.int64) + 1),
                timestamps(posts.created[part]),
                text,
                take(visibilities, posts.visibility[part]),
                pa.array(parent.astype(np.int64) + 1, mask=~reply),
                pa.array(quoted.astype(np.int64) + 1, mask=~quote),
                take(media_kinds, posts.media[part]),
                timestamps(deleted, deleted < 0),
            ]

        self._write(
            schema.POSTS, self.posts, build, chunk_rows=_TEXT_CHUNK_ROWS, dictionary=("visibility", "media")
        )

    # --- assistant interactions --------------------------------------------------------------------

    def _write_chats(self, accounts: Accounts, chats: Chats, vocabulary: Vocabulary) -> None:
        heads, tails = vocabulary.prompt_frames
        pii_heads = strings([frame.split("{}")[0] for frame in PII_PROMPTS])
        pii_tails = strings([frame.split("{}")[1] for frame in PII_PROMPTS])
        objects = pa.concat_arrays(vocabulary.objects)
        sizes = np.array([len(array) for array in vocabulary.objects])
        offsets = np.cumsum(sizes) - sizes

        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            rng, part, n = stream(self.seed, S_CHAT_TEXT, index), slice(start, stop), stop - start
            account = chats.account[part]
            topic = np.where(rng.random(n) < 0.7, accounts.topic[account], rng.integers(0, len(TOPICS), n))
            frame = rng.integers(0, len(PROMPTS), n)
            subject = take(objects, offsets[topic] + (rng.random(n) * sizes[topic]).astype(np.int64))
            prompt = join_rows([join_rows([take(heads, frame), subject], " "), take(tails, frame)], "")
            # a few prompts hand the assistant an e-mail address (first two frames) or a phone number
            has_pii = rng.random(n) < SHAPE.email_share + SHAPE.phone_share
            size = int(has_pii.sum())
            email = rng.random(size) < SHAPE.email_share / (SHAPE.email_share + SHAPE.phone_share)
            which = np.where(email, rng.integers(0, 2, size), 2)
            personal = pc.coalesce(
                scatter(vocabulary.emails(rng, int(email.sum())), email),
                scatter(vocabulary.phones(rng, int((~email).sum())), ~email),
            )
            pii = join_rows([take(pii_heads, which), personal, take(pii_tails, which)], "")
            prompt = pc.coalesce(scatter(pii, has_pii), prompt)
            example = pc.if_else(
                pa.array(rng.random(n) < 0.5),
                join_rows(['For example: "', vocabulary.sentences_for(rng, topic), '"'], ""),
                pa.scalar(None, pa.string()),
            )
            response = join_rows(
                [
                    take(vocabulary.answer_openers, rng.integers(0, len(ANSWER_OPENERS), n)),
                    take(vocabulary.answers, rng.integers(0, len(ANSWERS), n)),
                    example,
                    take(vocabulary.answers, rng.integers(0, len(ANSWERS), n)),
                    take(vocabulary.answers, rng.integers(0, len(ANSWERS), n), rng.random(n) < 0.5),
                ],
                " ",
            )
            deleted = chats.deleted[part]
            return [
                pa.array(np.arange(start + 1, stop + 1, dtype=np.int64)),
                pa.array(account.astype(np.int64) + 1),
                timestamps(chats.created[part]),
                prompt,
                response,
                timestamps(deleted, deleted < 0),
            ]

        self._write(
            schema.ASSISTANT_INTERACTIONS, int(chats.created.size), build, chunk_rows=_TEXT_CHUNK_ROWS
        )

    # --- blocks and follows ------------------------------------------------------------------------

    def _write_pairs(
        self,
        folder: schema.Folder,
        source: NDArray[np.int64],
        target: NDArray[np.int64],
        moment: NDArray[np.int64],
    ) -> None:
        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            part = slice(start, stop)
            return [pa.array(source[part] + 1), pa.array(target[part] + 1), timestamps(moment[part])]

        self._write(folder, int(source.size), build, chunk_rows=2 * _CHUNK_ROWS)

    # --- consent events ----------------------------------------------------------------------------

    def _write_events(
        self,
        account: NDArray[np.int64],
        moment: NDArray[np.int64],
        setting: NDArray[np.int8],
        source: NDArray[np.int8],
        deny: NDArray[np.int8],
    ) -> None:
        settings, values = strings(schema.SETTING_KEYS), strings(schema.CONSENT_VALUES)
        sources = strings(schema.CONSENT_SOURCES)

        def build(index: int, start: int, stop: int) -> list[pa.Array]:
            part = slice(start, stop)
            return [
                pa.array(account[part] + 1),
                take(settings, setting[part]),
                take(values, deny[part]),
                take(sources, source[part]),
                timestamps(moment[part]),
            ]

        self._write(
            schema.CONSENT_EVENTS,
            int(account.size),
            build,
            chunk_rows=2 * _CHUNK_ROWS,
            dictionary=("setting", "value", "source"),
        )
