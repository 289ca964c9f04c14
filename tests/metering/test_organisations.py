"""Organisations on SQLite and PostgreSQL: the registry, caseless names, API keys and networks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consentry.db import Database
from consentry.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from consentry.metering import organisations
from consentry.metering.attribution import hash_key
from consentry.metering.schemas import OrganisationUpdate

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def test_organisation_crud(database: Database) -> None:
    with database.write() as session:
        org = organisations.create_organisation(session, name="Example Labs", mode="throttle", quota=5000)
        org_id = org.id
    with database.write() as session:
        assert organisations.get_organisation(session, ref="example labs").id == org_id
        assert organisations.get_organisation(session, ref=str(org_id)).name == "Example Labs"
        assert organisations.get_organisation(session, ref=f"org:{org_id}").id == org_id
        updated = organisations.update_organisation(
            session, ref=org_id, changes=OrganisationUpdate(mode="pay", price_micro_usd=1500)
        )
        assert (updated.mode, updated.quota, updated.price_micro_usd) == ("pay", 5000, 1500)
        cleared = organisations.update_organisation(
            session, ref=org_id, changes=OrganisationUpdate(quota=None)
        )
        assert cleared.quota is None and cleared.mode == "pay"
        out = organisations.organisation_out(session, cleared)
        assert out.price_usd == "0.0015" and out.subject == f"org:{org_id}"
    with database.read() as session:
        assert [o.name for o in organisations.list_organisations(session)] == ["Example Labs"]
    with database.write() as session:
        organisations.delete_organisation(session, ref=org_id)
    with database.read() as session, pytest.raises(NotFound):
        organisations.get_organisation(session, ref=org_id)


def test_organisation_bad_input(database: Database) -> None:
    with database.write() as session:
        organisations.create_organisation(session, name="Taken")
    cases = [
        ({"name": "taken"}, Conflict),
        ({"name": "  "}, InvalidInput),
        ({"name": "12345"}, InvalidInput),
        ({"name": "a:b"}, InvalidInput),
        ({"name": "X", "mode": "free"}, InvalidInput),
        ({"name": "X", "mode": "pay"}, InvalidInput),
        ({"name": "X", "quota": -1}, InvalidInput),
        ({"name": "X", "quota": 2.5}, InvalidInput),
        ({"name": "X", "price_micro_usd": -3}, InvalidInput),
    ]
    for kwargs, error in cases:
        with database.write() as session, pytest.raises(error):
            organisations.create_organisation(session, **kwargs)  # type: ignore[arg-type]
    with database.read() as session, pytest.raises(NotFound):
        organisations.get_organisation(session, ref="nobody")


def test_keys_issue_resolve_revoke(database: Database) -> None:
    with database.write() as session:
        org = organisations.create_organisation(session, name="Keyed")
        row, key = organisations.issue_key(session, ref="Keyed", label="crawler fleet")
        key_id, org_id = row.id, org.id
        assert key.startswith("cso_") and row.key_hash == hash_key(key) and key not in row.key_hash
    with database.read() as session:
        assert organisations.resolve_key(session, key=key).id == org_id
        directory = organisations.load_directory(session)
        assert directory.attribute(api_key=key, client_ip="192.0.2.1").subject == f"org:{org_id}"
    with database.write() as session:
        organisations.revoke_key(session, key_id=key_id)
    with database.read() as session:
        with pytest.raises(Unauthenticated):
            organisations.resolve_key(session, key=key)
        assert (
            organisations.load_directory(session).attribute(api_key=key, client_ip="192.0.2.1").kind
            == "client"
        )
    with database.write() as session, pytest.raises(NotFound):
        organisations.revoke_key(session, key_id=999_999)


def test_networks(database: Database) -> None:
    with database.write() as session:
        organisations.create_organisation(session, name="Netted")
        network = organisations.add_network(session, ref="Netted", cidr=" 198.51.100.0/24 ")
        assert network.cidr == "198.51.100.0/24"
        organisations.add_network(session, ref="Netted", cidr="2001:db8::/48")
    with database.write() as session, pytest.raises(Conflict):
        organisations.add_network(session, ref="Netted", cidr="198.51.100.0/24")
    with database.write() as session, pytest.raises(InvalidInput):
        organisations.add_network(session, ref="Netted", cidr="198.51.100.0/33")
    with database.write() as session, pytest.raises(NotFound):
        organisations.add_network(session, ref="Nobody", cidr="192.0.2.0/24")
    with database.read() as session:
        directory = organisations.load_directory(session)
    assert directory.attribute(client_ip="198.51.100.9").label == "Netted"
    assert directory.attribute(client_ip="2001:db8:0:1::5").label == "Netted"
    with database.write() as session:
        organisations.remove_network(session, network_id=network.id)
    with database.read() as session:
        assert organisations.load_directory(session).attribute(client_ip="198.51.100.9").kind == "client"
