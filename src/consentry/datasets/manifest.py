"""``manifest.json`` and the Hugging Face dataset card (``README.md``) of a release."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consentry.datasets.eligibility import REASONS

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
    excluded: Mapping[str, Mapping[str, int]] = manifest["excluded"]
    recipient = manifest["recipient"]
    total = sum(rows.values())
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
    for index, category in enumerate(categories):
        header += [
            f"- config_name: {category}",
            "  data_files:",
            "  - split: train",
            f"    path: data/{category}/train-*",
        ]
        if index == 0:
            header.append("  default: true")
    header.append("---")

    window = manifest["window"]
    consent = manifest["consent"]
    body = [
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
    for category in categories:
        settings = ", ".join(f"`{key}`" for key in consent["settings"][category]) or "none (nothing eligible)"
        body.append(f"| `{category}` | {rows[category]:,} | {settings} |")
    incremental = manifest.get("incremental") or {}
    if incremental.get("since_release"):
        body += [
            "",
            f"This is an incremental release on top of `{incremental['since_release']}`: it holds only "
            "records not delivered before; `removals.parquet` lists earlier records that must be deleted "
            f"({sum(incremental['removals'].values()):,} in total).",
        ]
    body += ["", *_loading(categories, rows)]
    body += [
        "",
        "## Transforms",
        "",
        f"- `author` is a pseudonym ({manifest['transforms']['pseudonym']}): stable across this "
        "recipient's releases, unlinkable across recipients.",
        "- Links (`reply_to`, `quote_of`) to records that are not eligible are empty.",
        "- E-mail addresses and phone numbers in texts are replaced by `[email]` and `[phone]`."
        if manifest["transforms"]["pii_scrubbing"]
        else "- Texts are released as written (no personal-data scrubbing).",
        "",
        "## Exclusions",
        "",
        "Records left out of this release, one reason each (the first that applies, in this order):",
        "",
        "| reason | meaning | " + " | ".join(f"`{c}`" for c in categories) + " |",
        "|---|---|" + "---:|" * len(categories),
    ]
    for reason in REASONS:
        counts = " | ".join(f"{excluded[c].get(reason, 0):,}" for c in categories)
        body.append(f"| {reason} | {REASON_LABELS[reason]} | {counts} |")
    totals = " | ".join(f"{sum(excluded[c].values()):,}" for c in categories)
    body += [
        f"| **total** | | {totals} |",
        "",
        "## Provenance",
        "",
        *_ledger_lines(consent),
        f"- Policy versions in force: {', '.join(str(p['version']) for p in consent['policies']) or 'none'}.",
        f"- Built by Consentry {manifest['consentry_version']} with the {manifest['engine']} engine; "
        "`manifest.json` lists every file with its size and SHA-256.",
        "",
    ]
    return "\n".join([*header, "", *body])


def _ledger_lines(consent: dict[str, Any]) -> list[str]:
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
