"""``manifest.json`` and the Hugging Face dataset card (``README.md``) of a release."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from consentry import __version__
from consentry.datasets.eligibility import REASONS, SPECS, Retention, Window
from consentry.datasets.transforms import PSEUDONYM_SCHEME

MANIFEST_FORMAT = "consentry-release/1"
REASON_LABELS = {
    "inactive_account": "author's account deactivated or deleted",
    "minor": "author is a minor (or has no birth year)",
    "deleted": "record deleted",
    "not_public": "followers-only, or the author's account is protected",
    "opted_out": "author's consent is not allow for every covering setting",
    "outside_retention": "older than the category's retention window",
}
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)


def size_category(rows: int) -> str:
    """The Hugging Face ``size_categories`` value for a row count."""
    for limit, name in SIZE_CATEGORIES:
        if rows < limit:
            return name
    return "n>1B"


@dataclass(frozen=True)
class ReleaseFacts:
    """What a manifest records about a build besides what the engine produced."""

    release_id: str
    created_at: datetime
    recipient: Mapping[str, str]
    purpose: str
    categories: list[str]
    window: Window
    engine: str
    lake: Mapping[str, Any]
    chain: tuple[str, ...]
    """Ids of the releases an incremental release builds on, oldest first (empty for a full one)."""
    covering: Mapping[str, tuple[str, ...]]
    policies: list[dict[str, Any]]
    head: dict[str, Any]
    checkpoint: dict[str, Any] | None
    events: int
    scrub: bool
    retention: Retention
    license: str


def release_manifest(
    facts: ReleaseFacts,
    *,
    rows: Mapping[str, int],
    excluded: Mapping[str, dict[str, int]],
    already_held: Mapping[str, int],
    removals: Mapping[str, int],
) -> dict[str, Any]:
    """The manifest of a release, without its list of files."""
    categories, window = facts.categories, facts.window
    return {
        "format": MANIFEST_FORMAT,
        "release_id": facts.release_id,
        "created_at": facts.created_at.isoformat(),
        "recipient": dict(facts.recipient),
        "purpose": facts.purpose,
        "categories": categories,
        "as_of": window.as_of.isoformat(),
        "window": {
            "since": window.since.isoformat() if window.since else None,
            "until": window.until.isoformat() if window.until else None,
        },
        "engine": facts.engine,
        "lake": dict(facts.lake),
        "incremental": {
            "since_release": facts.chain[-1] if facts.chain else None,
            "chain": list(facts.chain),
            "already_held": dict(already_held),
            "removals": dict(removals),
        },
        "consent": {
            "settings": {c: list(facts.covering[c]) for c in categories},
            "policies": facts.policies,
            "ledger_head": facts.head,
            "checkpoint": facts.checkpoint,
            "events_considered": facts.events,
        },
        "transforms": {
            "pseudonym": PSEUDONYM_SCHEME,
            "pii_scrubbing": facts.scrub,
            "links": "reply_to and quote_of naming an ineligible record are null",
        },
        "retention_days": facts.retention.describe(),
        "rows": dict(rows),
        "excluded": {c: excluded[c] for c in categories},
        "schema": {c: [{"name": f.name, "type": str(f.type)} for f in SPECS[c].schema] for c in categories},
        "license": facts.license,
        "consentry_version": __version__,
    }


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> bytes:
    """Write the manifest (sorted keys, indented) and return its bytes."""
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    path.write_bytes(data)
    return data


def _yaml_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def _loading(categories: list[str], rows: Mapping[str, int]) -> list[str]:
    """The card's section on loading the release with Hugging Face ``datasets``: each config streamed,
    which loads every config, one without rows too."""
    empty = [category for category in categories if not rows[category]]
    lines = [
        "## Loading",
        "",
        "With Hugging Face `datasets`, from this folder (one config per category):",
        "",
        "```python",
        "from pathlib import Path",
        "",
        "import datasets",
        "",
        'release = str(Path(".").resolve())  # run in this folder, or write its path',
        *(
            f'{category} = datasets.load_dataset(release, "{category}", split="train", streaming=True)'
            for category in categories
        ),
        "```",
        "",
        "A config with rows also loads into the local cache without `streaming=True`.",
    ]
    if empty:
        names = ", ".join(f"`{category}`" for category in empty)
        lines.append(
            f"{names} {'has' if len(empty) == 1 else 'have'} no rows in this release: `datasets` builds no "
            "split of zero rows in its cache, so load "
            f"{'it' if len(empty) == 1 else 'them'} streamed (the shard holds the schema and no rows)."
        )
    return lines


def dataset_card(manifest: Mapping[str, Any]) -> str:
    """The dataset card: YAML header (license, size category, one config per category) and a body
    reporting consent, transforms and exclusions."""
    categories: list[str] = list(manifest["categories"])
    rows: Mapping[str, int] = manifest["rows"]
    body = [
        *_summary(manifest),
        "",
        *_loading(categories, rows),
        "",
        *_transforms(manifest["transforms"]),
        "",
        *_exclusions(categories, manifest["excluded"]),
        "",
        "## Provenance",
        "",
        *_ledger_lines(manifest["consent"]),
        "- Policy versions in force: "
        f"{', '.join(str(p['version']) for p in manifest['consent']['policies']) or 'none'}.",
        f"- Built by Consentry {manifest['consentry_version']} with the {manifest['engine']} engine; "
        "`manifest.json` lists every file with its size and SHA-256.",
        "",
    ]
    return "\n".join([*_header(manifest), "", *body])


def _header(manifest: Mapping[str, Any]) -> list[str]:
    """The card's YAML header: license, name, size category and one config per category."""
    total = sum(manifest["rows"].values())
    license_name = manifest["license"]
    header = ["---", f"license: {_yaml_text(license_name)}"]
    if license_name == "other":
        header.append(f"license_name: {_yaml_text('consentry-recipient-agreement')}")
    header += [
        f"pretty_name: {_yaml_text('Consentry release ' + manifest['release_id'])}",
        "size_categories:",
        f"- {size_category(total)}",
        "configs:",
    ]
    for index, category in enumerate(manifest["categories"]):
        header += [
            f"- config_name: {category}",
            "  data_files:",
            "  - split: train",
            f"    path: data/{category}/train-*",
        ]
        if index == 0:
            header.append("  default: true")
    header.append("---")
    return header


def _summary(manifest: Mapping[str, Any]) -> list[str]:
    """What the release holds, for whom, and which settings had to allow."""
    recipient, window, consent = manifest["recipient"], manifest["window"], manifest["consent"]
    rows: Mapping[str, int] = manifest["rows"]
    lines = [
        f"# Consentry release {manifest['release_id']}",
        "",
        f"Records released to **{recipient['name']}** ({recipient['kind'].replace('_', ' ')}) "
        f"for the purpose `{manifest['purpose']}`, with consent evaluated at **{manifest['as_of']}**"
        + (f", records created from {window['since']}" if window.get("since") else "")
        + (f" until {window['until']}" if window.get("until") else "")
        + ".",
        "",
        "Every record is included only if it is public, not deleted, inside its retention window, and its "
        "author's effective consent was allow at that time for every setting covering this use.",
        "",
        "| config | rows | settings that had to allow |",
        "|---|---:|---|",
    ]
    for category in manifest["categories"]:
        settings = ", ".join(f"`{key}`" for key in consent["settings"][category]) or "none (nothing eligible)"
        lines.append(f"| `{category}` | {rows[category]:,} | {settings} |")
    incremental = manifest.get("incremental") or {}
    if incremental.get("since_release"):
        lines += [
            "",
            f"This is an incremental release on top of `{incremental['since_release']}`: it holds only "
            "records not delivered before; `removals.parquet` lists earlier records that must be deleted "
            f"({sum(incremental['removals'].values()):,} in total).",
        ]
    return lines


def _transforms(transforms: Mapping[str, Any]) -> list[str]:
    """The card's section on what was changed in the released records."""
    return [
        "## Transforms",
        "",
        f"- `author` is a pseudonym ({transforms['pseudonym']}): stable across this "
        "recipient's releases, unlinkable across recipients.",
        "- Links (`reply_to`, `quote_of`) to records that are not eligible are empty.",
        "- E-mail addresses and phone numbers in texts are replaced by `[email]` and `[phone]`."
        if transforms["pii_scrubbing"]
        else "- Texts are released as written (no personal-data scrubbing).",
    ]


def _exclusions(categories: list[str], excluded: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The card's table of records left out, per reason and category."""
    lines = [
        "## Exclusions",
        "",
        "Records left out of this release, one reason each (the first that applies, in this order):",
        "",
        "| reason | meaning | " + " | ".join(f"`{c}`" for c in categories) + " |",
        "|---|---|" + "---:|" * len(categories),
    ]
    for reason in REASONS:
        counts = " | ".join(f"{excluded[c].get(reason, 0):,}" for c in categories)
        lines.append(f"| {reason} | {REASON_LABELS[reason]} | {counts} |")
    totals = " | ".join(f"{sum(excluded[c].values()):,}" for c in categories)
    lines.append(f"| **total** | | {totals} |")
    return lines


def _ledger_lines(consent: Mapping[str, Any]) -> list[str]:
    """The card's statement of the ledger position the build read: a checkpoint when it cites one."""
    head = consent["ledger_head"]
    cited = consent.get("checkpoint")
    if not cited:
        return [f"- Consent ledger head at build time: seq {head['seq']}, hash `{head['hash']}`."]
    witnesses = ", ".join(cited["cosigned_by"]) or "no witness yet"
    return [
        f"- Consent ledger at build time: checkpoint `{cited['origin']}` of size {cited['size']}, root "
        f"`{cited['root']}` (signed by the log; cosigned by {witnesses}); events 1 to {head['seq']}, the "
        f"last with hash `{head['hash']}`.",
        "- Anyone can prove that history unchanged since: `consentry dataset verify` checks that the "
        "log's current checkpoint extends this one (a consistency proof).",
    ]
