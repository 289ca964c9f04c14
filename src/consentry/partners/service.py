"""Partner use cases, the domain's public face: the registry (``registry``), API keys (``api_keys``), what
a partner may read and acknowledge (``feed``), the overdue report and release block (``overdue``), and a
partner's full record for the admin API.

A partner is a ``Recipient`` of the datasets domain with its partner columns filled in (status, deletion
deadline, webhook endpoint); ``add_partner`` creates it through ``datasets.service.add_recipient``.

A partner authenticates with an API key (``cpk_...``, stored as SHA-256 only) and sees its own published
releases and its own revocations, nothing else: anything of another partner is "not found", exactly as if
it did not exist. It attests each revocation's deletion once; repeating an acknowledgement returns the
first attestation and changes nothing. Revocations past their deadline without acknowledgement are
*overdue*; while a partner has any (and ``block_releases_when_overdue`` is on), or while it is suspended,
``check_can_receive`` refuses it new releases.

Every function takes the caller's session and never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from consentry.datasets.models import Recipient
from consentry.partners.api_keys import (
    TOUCH_INTERVAL,
    PartnerPrincipal,
    authenticate,
    create_key,
    forbid_suspended,
    list_keys,
    needs_touch,
    revoke_key,
    touch_key,
)
from consentry.partners.feed import (
    CURSOR,
    MANIFEST,
    MEDIA_TYPES,
    PRIVATE_FOLDERS,
    ServedFile,
    acknowledge,
    load_manifest,
    parse_cursor,
    partner_release,
    partner_releases,
    release_file,
    release_files,
    release_summary,
    revocation_feed,
    revocation_out,
)
from consentry.partners.overdue import (
    check_can_receive,
    overdue_count,
    overdue_report,
)
from consentry.partners.registry import (
    MAX_DEADLINE_HOURS,
    MAX_URL_CHARS,
    RESERVED_NAMES,
    STATUSES,
    add_partner,
    check_deadline_hours,
    check_webhook_secret,
    check_webhook_url,
    get_partner,
    list_partners,
    partner_out,
    revocation_counts,
    set_status,
    update_partner,
)
from consentry.partners.schemas import KeyOut, PartnerDetail

__all__ = [
    "CURSOR",
    "MANIFEST",
    "MAX_DEADLINE_HOURS",
    "MAX_URL_CHARS",
    "MEDIA_TYPES",
    "PRIVATE_FOLDERS",
    "RESERVED_NAMES",
    "STATUSES",
    "TOUCH_INTERVAL",
    "PartnerPrincipal",
    "ServedFile",
    "acknowledge",
    "add_partner",
    "authenticate",
    "check_can_receive",
    "check_deadline_hours",
    "check_webhook_secret",
    "check_webhook_url",
    "create_key",
    "forbid_suspended",
    "get_partner",
    "list_keys",
    "list_partners",
    "load_manifest",
    "needs_touch",
    "overdue_count",
    "overdue_report",
    "parse_cursor",
    "partner_detail",
    "partner_out",
    "partner_release",
    "partner_releases",
    "release_file",
    "release_files",
    "release_summary",
    "revocation_counts",
    "revocation_feed",
    "revocation_out",
    "revoke_key",
    "set_status",
    "touch_key",
    "update_partner",
]


def partner_detail(session: Session, partner: Recipient, *, now: datetime | None = None) -> PartnerDetail:
    """A partner with its keys (newest first) and its revocations by state."""
    return PartnerDetail(
        **partner_out(partner).model_dump(),
        keys=[KeyOut.model_validate(k) for k in list_keys(session, partner=partner.name)],
        revocations=revocation_counts(session, recipient_id=partner.id, now=now),
    )
