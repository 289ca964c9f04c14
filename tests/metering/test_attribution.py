"""Attribution: keys, networks, AI crawler user agents, and the client-network fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consentry.errors import InvalidInput
from consentry.metering.attribution import (
    CrawlerCatalog,
    Directory,
    NetworkTable,
    OrgPolicy,
    client_network,
    default_crawlers,
    hash_key,
    parse_network,
)

GPTBOT_UA = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)"
)
CLAUDEBOT_UA = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)"
)
CCBOT_UA = "CCBot/2.0 (https://commoncrawl.org/faq/)"
BYTESPIDER_UA = (
    "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
    "(compatible; Bytespider; spider-feedback@bytedance.com)"
)
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
)
GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def test_shipped_crawler_file_has_at_least_100_real_entries() -> None:
    catalog = default_crawlers()
    assert len(catalog) >= 100
    by_token = {crawler.token: crawler for crawler in catalog}
    expected = {
        "GPTBot": "OpenAI",
        "ClaudeBot": "Anthropic",
        "CCBot": "Common Crawl Foundation",
        "Google-Extended": "Google",
        "Bytespider": "ByteDance",
        "PerplexityBot": "Perplexity",
        "Applebot-Extended": "Apple",
        "Meta-ExternalAgent": "Meta",
        "Amazonbot": "Amazon",
        "cohere-ai": "Cohere",
        "Diffbot": "Diffbot",
    }
    for token, operator in expected.items():
        assert by_token[token].operator == operator
    for crawler in catalog:
        assert crawler.purpose and crawler.operator
        assert crawler.url is None or crawler.url.startswith("https://")


@pytest.mark.parametrize(
    ("user_agent", "token", "operator"),
    [
        (GPTBOT_UA, "GPTBot", "OpenAI"),
        (CLAUDEBOT_UA, "ClaudeBot", "Anthropic"),
        (CCBOT_UA, "CCBot", "Common Crawl Foundation"),
        (BYTESPIDER_UA, "Bytespider", "ByteDance"),
        ("Mozilla/5.0 (compatible; meta-externalagent/1.1)", "Meta-ExternalAgent", "Meta"),
        (
            "Mozilla/5.0 (compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
            "PerplexityBot",
            "Perplexity",
        ),
        ("Ai2Bot-Dolma (+https://www.allenai.org/crawler)", "Ai2Bot-Dolma", "Allen Institute for AI"),
    ],
)
def test_crawler_user_agents_are_attributed_to_their_operator(
    user_agent: str, token: str, operator: str
) -> None:
    crawler = default_crawlers().match(user_agent)
    assert crawler is not None
    assert (crawler.token, crawler.operator) == (token, operator)
    attribution = Directory().attribute(client_ip="198.51.100.7", user_agent=user_agent)
    assert attribution.kind == "crawler"
    assert attribution.label == operator
    assert attribution.subject.startswith("crawler:")


@pytest.mark.parametrize("user_agent", [CHROME_UA, GOOGLEBOT_UA, "", None, "curl/8.5.0", "MyGPTBotics/1.0"])
def test_ordinary_user_agents_match_no_crawler(user_agent: str | None) -> None:
    assert default_crawlers().match(user_agent) is None


def test_crawler_of_a_registered_operator_is_attributed_to_the_organisation() -> None:
    openai = OrgPolicy(id=7, name="openai", mode="pay", price_micro_usd=1500)
    attribution = Directory([openai]).attribute(client_ip="198.51.100.7", user_agent=GPTBOT_UA)
    assert attribution.subject == "org:7"
    assert attribution.organisation == openai
    assert attribution.crawler is not None and attribution.crawler.token == "GPTBot"


def test_cidr_attribution_prefers_the_longest_prefix() -> None:
    table = NetworkTable(
        [("203.0.113.0/24", 1), ("203.0.113.128/25", 2), ("2001:db8::/32", 3), ("10.0.0.0/8", 4)]
    )
    assert table.lookup("203.0.113.5") == 1
    assert table.lookup("203.0.113.200") == 2
    assert table.lookup("2001:db8:1::1") == 3
    assert table.lookup("10.200.3.4") == 4
    assert table.lookup("::ffff:203.0.113.9") == 1  # IPv4-mapped IPv6
    assert table.lookup("192.0.2.1") is None
    assert table.lookup("not an address") is None
    assert table.lookup(None) is None


def test_fallback_is_the_client_network() -> None:
    assert client_network("198.51.100.77") == "198.51.100.0/24"
    assert client_network("2001:db8:abcd:12:1:2:3:4") == "2001:db8:abcd:12::/64"
    assert client_network("::ffff:198.51.100.77") == "198.51.100.0/24"
    assert client_network(None) == "unknown"
    assert client_network("garbage") == "unknown"
    directory = Directory()
    assert (
        directory.attribute(client_ip="198.51.100.77", user_agent=CHROME_UA).subject == "net:198.51.100.0/24"
    )
    v6 = directory.attribute(client_ip="2001:db8:abcd:12::99", user_agent=CHROME_UA)
    assert (v6.subject, v6.kind) == ("net:2001:db8:abcd:12::/64", "client")


def test_order_is_key_then_network_then_crawler() -> None:
    by_key = OrgPolicy(id=1, name="Keyed", mode="meter")
    by_net = OrgPolicy(id=2, name="Netted", mode="throttle")
    directory = Directory(
        [by_key, by_net],
        keys={hash_key("cso_secret"): 1},
        networks=NetworkTable([("198.51.100.0/24", 2)]),
    )
    assert (
        directory.attribute(api_key="cso_secret", client_ip="198.51.100.7", user_agent=GPTBOT_UA).subject
        == "org:1"
    )
    assert (
        directory.attribute(api_key="cso_unknown", client_ip="198.51.100.7", user_agent=GPTBOT_UA).subject
        == "org:2"
    )
    assert directory.attribute(client_ip="192.0.2.1", user_agent=GPTBOT_UA).subject == "crawler:openai"


@pytest.mark.parametrize(
    "cidr", ["", "10.0.0.0/33", "300.1.2.0/24", "10.0.0.1/24", "2001:db8::1/32", "hello", "10.0.0.0/-1"]
)
def test_malformed_cidrs_are_invalid_input(cidr: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_network(cidr)
    assert error.value.field == "cidr"
    with pytest.raises(InvalidInput):
        NetworkTable([(cidr, 1)])


def test_host_bits_error_suggests_the_network() -> None:
    with pytest.raises(InvalidInput, match=r"did you mean 10\.0\.0\.0/24"):
        parse_network("10.0.0.1/24")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "non-empty list"),
        ('{"crawlers": "GPTBot"}', "non-empty list"),
        ('[{"token": "GPTBot"}]', "operator"),
        ('[{"token": "", "operator": "X"}]', "token"),
        ('[{"token": "Bad\\nBot", "operator": "X"}]', "token"),
        ('[{"token": "GPTBot", "operator": "OpenAI", "url": "ftp://x"}]', "url"),
        ('[{"token": "GPTBot", "operator": "OpenAI", "colour": "red"}]', "unknown fields"),
        ('[{"token": "GPTBot", "operator": "A"}, {"token": "gptbot", "operator": "B"}]', "twice"),
        ('["GPTBot"]', "not an object"),
    ],
)
def test_malformed_crawler_files_are_invalid_input(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "crawlers.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        CrawlerCatalog.load(path)


def test_missing_crawler_file_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        CrawlerCatalog.load(tmp_path / "absent.json")


def test_a_replacement_crawler_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "crawlers.json"
    path.write_text(
        json.dumps([{"token": "ExampleBot", "operator": "Example Labs", "purpose": "test", "url": None}])
    )
    catalog = CrawlerCatalog.load(path)
    directory = Directory(crawlers=catalog)
    attribution = directory.attribute(client_ip="192.0.2.1", user_agent="examplebot/3.1")
    assert (attribution.subject, attribution.label) == ("crawler:example-labs", "Example Labs")
    assert directory.attribute(client_ip="192.0.2.1", user_agent=GPTBOT_UA).kind == "client"
