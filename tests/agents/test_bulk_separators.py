"""The bulk file takes lists of people as the set-up wizard does: separated by ";" or "," (in a quoted CSV cell)."""

from __future__ import annotations

import pytest

from agents import bulk, registry
from agents.forms import UsernamesField
from agents.models import Agent
from tests.factories import make_blueprint

pytestmark = pytest.mark.django_db

HEADER = "blueprint,name,identity_type,scope,sponsors,owners,attributes,expires_at"


def test_bulk_file_accepts_the_separators_the_wizard_accepts(world):
    make_blueprint("Triage")
    text = "\n".join([HEADER, 'Triage,comma-1,agent_identity,workspace,"owner, owner_b",owner,,',
                      "Triage,semi-1,agent_identity,workspace,owner;owner_b,owner,,"]) + "\n"
    bulk.provision_file(actor=world.owner, workspace=world.alpha, stream=text, filename="agents.csv")
    for name in ("comma-1", "semi-1"):
        people = registry.people_of(Agent.objects.get(name=name))
        assert [u.username for u in people["sponsor_agent"]] == ["owner", "owner_b"]
    wizard = [u.username for u in UsernamesField().clean("owner, owner_b")]
    assert wizard == [u.username for u in UsernamesField().clean("owner;owner_b")] == ["owner", "owner_b"]
