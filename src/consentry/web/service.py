"""What the settings page of one account shows: its settings, consent history, links and data usage.

The operator's dashboard is ``consentry.web.dashboard``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from consentry.consent.service import ConsentContext


@dataclass(frozen=True)
class HistoryRow:
    """One event of the account's consent history, as the page shows it."""

    seq: int
    setting: str
    label: str
    value: str
    source: str
    client: str
    recorded_at: datetime
    chosen_from: str = ""
    """For a choice made from a linked account: that account's handle (``"another account"`` once the
    link or the account is gone); empty for the account's own choices."""


@dataclass
class SettingsPage:
    """What the settings page of one account shows (the consent part is ``consentry.consent.service``)."""

    account_id: int
    handle: str
    group: str
    states: list[Any]
    history: list[HistoryRow] = field(default_factory=list)
    usage: list[Any] = field(default_factory=list)
    choice_times: dict[str, datetime] = field(default_factory=dict)
    gpc_choices: set[str] = field(default_factory=set)
    links: list[Any] = field(default_factory=list)

    @property
    def linked(self) -> list[Any]:
        """The confirmed links (a change of scope ``linked`` reaches these accounts)."""
        return [link for link in self.links if link.status == "confirmed"]


def settings_page(
    session: Session, *, account_id: int, ctx: ConsentContext, history_limit: int = 50
) -> SettingsPage:
    """The settings, consent history and data usage of one account."""
    from consentry.consent import ledger
    from consentry.consent import service as consent
    from consentry.links.service import links_of
    from consentry.partners.usage import data_usage
    from consentry.social.service import get_account

    account = get_account(session, account_id)
    states = consent.settings_view(session, account_id=account_id, ctx=ctx)
    events = consent.history(session, account_id=account_id, limit=history_limit)
    links = links_of(session, account_id=account_id)
    own = ledger.subject_key_for(session, account_id, create=False)
    handles = {link.account_id: link.handle for link in links}
    by_subject = {
        key: "@" + handles[other] for other, key in ledger.subject_keys(session, list(handles)).items()
    }
    labels = {s.key: s.label for s in ctx.catalog.settings}
    history = [
        HistoryRow(
            e.seq,
            e.setting,
            labels.get(e.setting, e.setting),
            e.value,
            e.source,
            e.client,
            e.recorded_at,
            ""
            if e.chosen_by is None or e.chosen_by == own
            else by_subject.get(e.chosen_by, "another account"),
        )
        for e in events
    ]
    by_seq = {e.seq: e for e in events}
    choice_times: dict[str, datetime] = {}
    gpc: set[str] = set()
    for state in states:
        if state.seq is None:
            continue
        event = by_seq.get(state.seq)
        if event is None:
            from consentry.consent.models import ConsentEvent

            event = session.get(ConsentEvent, state.seq)
        if event is not None:
            choice_times[state.key] = event.recorded_at
            if event.source == "gpc":
                gpc.add(state.key)
    return SettingsPage(
        account_id=account_id,
        handle=account.handle,
        group=ctx.jurisdictions.group_of(account.country),
        states=states,
        history=history,
        usage=list(data_usage(session, account_id=account_id)),
        choice_times=choice_times,
        gpc_choices=gpc,
        links=links,
    )
