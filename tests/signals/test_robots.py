"""robots.txt read by real parsers (Protego, the standard library), and tdmrep.json."""

from __future__ import annotations

import re
import urllib.robotparser

import pytest
from protego import Protego

from consentry.errors import InvalidInput
from consentry.metering.attribution import CrawlerCatalog, default_crawlers
from consentry.signals import ContentSignals, blocked_crawlers, robots_txt, tdmrep, trains_models
from consentry.signals.robots import PRIVATE_PATHS, PUBLIC_PATHS

BASE = "https://social.example"
CONTENT = ("/v1/platform/posts/42", "/v1/platform/accounts/7", "/v1/platform/accounts/7/posts?limit=20")
PRIVATE = ("/v1/me/settings", "/v1/admin/organisations", "/v1/platform/me/follow-requests")
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
SEARCH = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SIGNAL = re.compile(
    r"^Content-Signal: (search|ai-train|ai-input)=(yes|no)(, (search|ai-train|ai-input)=(yes|no))*$"
)


def user_agents(token: str) -> list[str]:
    """The bare product token and a full user-agent string carrying it."""
    return [
        token,
        f"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; {token}/1.0; +https://bot.example)",
    ]


def stdlib(text: str) -> urllib.robotparser.RobotFileParser:
    parser = urllib.robotparser.RobotFileParser()
    parser.parse(text.splitlines())
    return parser


def groups_of(text: str) -> dict[str, list[str]]:
    """User-agent -> the rule lines of its group (one user-agent per group here)."""
    groups: dict[str, list[str]] = {}
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith("#")]
        if lines:
            assert lines[0].startswith("User-agent: ")
            agent = lines[0].split(":", 1)[1].strip()
            assert agent not in groups
            groups[agent] = lines[1:]
    return groups


def signal_of(rules: list[str]) -> dict[str, str]:
    """The Content-Signal of a group: exactly one well-formed line, each signal once."""
    lines = [line for line in rules if line.lower().startswith("content-signal")]
    assert len(lines) == 1
    assert SIGNAL.match(lines[0]), lines[0]
    pairs = [pair.split("=") for pair in lines[0].split(":", 1)[1].strip().split(", ")]
    assert len({name for name, _ in pairs}) == len(pairs), "each signal once"
    return dict(pairs)


def test_every_known_ai_crawler_is_blocked_from_content() -> None:
    text = robots_txt()
    protego, std = Protego.parse(text), stdlib(text)
    crawlers = list(default_crawlers())
    assert len(crawlers) > 50
    for crawler in crawlers:
        for path in CONTENT:
            for agent in user_agents(crawler.token):
                assert not protego.can_fetch(BASE + path, agent), (agent, path)
            # the standard library reads only the first product token of a user-agent string
            assert not std.can_fetch(crawler.token, BASE + path), (crawler.token, path)
        assert protego.can_fetch(BASE + "/.well-known/tdmrep.json", crawler.token), crawler.token


@pytest.mark.parametrize("agent", [BROWSER, SEARCH, "Googlebot", "curl/8.5.0"])
def test_other_agents_read_public_content_but_not_private_routes(agent: str) -> None:
    text = robots_txt()
    protego, std = Protego.parse(text), stdlib(text)
    for path in CONTENT:
        assert protego.can_fetch(BASE + path, agent), path
        assert std.can_fetch(agent, BASE + path), path
    for path in PRIVATE:
        assert not protego.can_fetch(BASE + path, agent), path
        assert not std.can_fetch(agent, BASE + path), path


def test_training_scope_blocks_exactly_the_training_crawlers() -> None:
    text = robots_txt(scope="training")
    protego, std = Protego.parse(text), stdlib(text)
    verdicts = {c.token: trains_models(c) for c in default_crawlers()}
    training = {token for token, trains in verdicts.items() if trains}
    assert {
        "GPTBot",
        "ClaudeBot",
        "CCBot",
        "Google-Extended",
        "Applebot-Extended",
        "Bytespider",
        "omgili",
    } <= training
    assert {
        "ChatGPT-User",
        "OAI-SearchBot",
        "PerplexityBot",
        "Applebot",
        "Claude-User",
        "omgilibot",
    }.isdisjoint(training)
    for token, trains in verdicts.items():
        for agent in user_agents(token):
            assert protego.can_fetch(BASE + CONTENT[0], agent) is not trains, agent
            assert not protego.can_fetch(BASE + PRIVATE[0], agent), agent
        assert std.can_fetch(token, BASE + CONTENT[0]) is not trains, token
        assert not std.can_fetch(token, BASE + PRIVATE[0]), token
    assert [c.token for c in blocked_crawlers(scope="training")] == [t for t in verdicts if t in training]
    for agent, rules in groups_of(text).items():
        if agent not in training:
            assert signal_of(rules) == {"search": "yes", "ai-train": "no", "ai-input": "no"}, agent


def test_undocumented_purposes_count_as_training() -> None:
    catalog = CrawlerCatalog.from_data(
        [
            {"token": "MysteryBot", "operator": "Unknown", "purpose": "Undocumented crawler."},
            {"token": "AnswerBot", "operator": "Answers", "purpose": "Fetches pages when a user asks."},
        ]
    )
    assert [c.token for c in blocked_crawlers(catalog, scope="training")] == ["MysteryBot"]
    assert [c.token for c in blocked_crawlers(catalog, scope="all")] == ["MysteryBot", "AnswerBot"]
    with pytest.raises(InvalidInput):
        blocked_crawlers(catalog, scope="some")  # type: ignore[arg-type]


def test_groups_are_well_formed() -> None:
    text = robots_txt()
    assert len(text.encode()) < 500 * 1024  # RFC 9309 parsers may stop reading at 500 KiB
    groups = groups_of(text)
    assert set(groups) == {c.token for c in default_crawlers()} | {"*"}
    assert list(groups)[-1] == "*"
    lengths = [len(agent) for agent in list(groups)[:-1]]
    assert lengths == sorted(lengths, reverse=True)  # longest token first, for first-match parsers
    for agent, rules in groups.items():
        if agent != "*":
            assert rules == ["Allow: /.well-known/", "Disallow: /"], agent
    default = groups["*"]
    assert default[1:] == [f"Allow: {p}" for p in PUBLIC_PATHS] + [f"Disallow: {p}" for p in PRIVATE_PATHS]
    assert {"Disallow: /v1/me/", "Disallow: /v1/admin/"} <= set(default)


def test_content_signal_line_reflects_the_platform_policy() -> None:
    assert signal_of(groups_of(robots_txt())["*"]) == {"search": "yes", "ai-train": "no", "ai-input": "no"}
    assert "\nContent-Signal: search=yes, ai-train=no, ai-input=no\n" in robots_txt()
    custom = robots_txt(signals=ContentSignals(search=False, ai_train=True, ai_input=False))
    assert signal_of(groups_of(custom)["*"]) == {"search": "no", "ai-train": "yes", "ai-input": "no"}


def test_custom_crawler_file_and_bad_input() -> None:
    catalog = CrawlerCatalog.from_data(
        [{"token": "Kangaroo Bot", "operator": "K", "purpose": "Trains models."}]
    )
    protego = Protego.parse(robots_txt(crawlers=catalog))
    assert not protego.can_fetch(BASE + CONTENT[0], "Kangaroo Bot/1.0")
    assert protego.can_fetch(BASE + CONTENT[0], "GPTBot/1.0")  # not in this file
    with pytest.raises(InvalidInput):
        robots_txt(crawlers=CrawlerCatalog.from_data([{"token": "Odd/Bot", "operator": "O"}]))
    with pytest.raises(InvalidInput):
        robots_txt(public_paths=["/posts\nDisallow: /"])
    with pytest.raises(InvalidInput):
        robots_txt(private_paths=["me"])


def test_tdmrep_shape() -> None:
    rules = tdmrep()
    assert isinstance(rules, list)
    assert [r["location"] for r in rules] == [*PUBLIC_PATHS, "/"]  # most specific first
    for rule in rules:
        assert set(rule) == {"location", "tdm-reservation"}
        assert rule["tdm-reservation"] == 1
    with_policy = tdmrep(policy_url="https://social.example/tdm-policy.json")
    assert all(r["tdm-policy"] == "https://social.example/tdm-policy.json" for r in with_policy)
    assert all(set(r) == {"location", "tdm-reservation", "tdm-policy"} for r in with_policy)
    with pytest.raises(InvalidInput):
        tdmrep(policy_url="ftp://social.example/policy")
