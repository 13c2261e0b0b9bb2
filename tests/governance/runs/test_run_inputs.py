"""Run inputs are checked by the type and limits their manifest declares before anything is queued, any token issued
or anything audited; the message uses the input's label; a failed run offers no rating."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from agents import manifests, registry
from agents.inputs import declared_inputs
from governance.runs import builtin as builtin_agents
from governance.runs import services as runs
from governance.runs.models import Feedback, Run
from governance.signin.models import AccessToken, SignIn
from portal.models import AuditEvent
from tests.factories import agent_spec

pytestmark = pytest.mark.django_db
FIXTURES = Path("/work/shared/fixtures/manifests")


def _hygiene_session(w):
    blueprint = {b.name: b for b in builtin_agents.install()}["AgentHygieneAgent"]
    agent = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        blueprint, "hygiene", sponsors=[w.owner, w.owner_b], owners=[w.owner])).agent
    return runs.session_open(actor=w.contributor, agent=agent)


def _recorded():
    return (Run.objects.count(), SignIn.objects.count(), AccessToken.objects.count(), AuditEvent.objects.count())


@pytest.mark.parametrize("value", ["abc", "999", "0", "2.5", "-3"])
def test_run_inputs_out_of_their_declared_type_or_limits_are_refused_before_anything_is_recorded(
        client, registry_world, value):
    w = registry_world
    session = _hygiene_session(w)
    before = _recorded()
    client.force_login(w.contributor)
    page = client.get(reverse("session-detail", args=[session.pk])).content.decode()
    assert "Secrets expiring within (days)" in page and "ExpiringWithinDays</label>" not in page

    response = client.post(reverse("run-start", args=[session.pk]), {"ExpiringWithinDays": value})
    body = response.content.decode()
    assert response.status_code == 200
    assert (f"Secrets expiring within (days) must be a whole number from 1 to 365 (you entered “{value}”)."
            in body), body
    assert 'class="invalid-feedback d-block"' in body  # next to its field
    assert _recorded() == before  # no run, no sign-in, no token, no audit event

    with pytest.raises(ValidationError) as refused:
        runs.run_start(actor=w.contributor, session=session, inputs={"ExpiringWithinDays": value})
    assert "ExpiringWithinDays" in refused.value.message_dict
    assert _recorded() == before


def test_run_inputs_within_their_limits_start_the_run(client, registry_world):
    w = registry_world
    session = _hygiene_session(w)
    client.force_login(w.contributor)
    response = client.post(reverse("run-start", args=[session.pk]), {"ExpiringWithinDays": " 365 "})
    run = Run.objects.get()
    assert response.status_code == 302 and run.inputs == {"ExpiringWithinDays": "365"}


def test_the_api_refuses_a_bad_input_with_its_field_and_records_nothing(client, registry_world):
    w = registry_world
    session = _hygiene_session(w)
    before = _recorded()
    client.force_login(w.contributor)
    response = client.post("/api/v1/runs/", {"session": session.pk, "inputs": {"ExpiringWithinDays": "abc"}},
                           content_type="application/json")
    assert response.status_code == 400, response.content
    assert "must be a whole number from 1 to 365" in response.content.decode()
    assert _recorded() == before


def test_every_problem_is_reported_at_once_in_the_words_of_the_form(registry_world):
    declared = [{"Name": "minCvssScore", "DefaultValue": 0, "Description": "Minimum CVSS score."},
                {"Name": "environmentKeywords", "Required": True, "Description": "Keywords."},
                {"Name": "Verbose", "Type": "boolean"}]
    items = {item.name: item for item in declared_inputs(declared)}
    assert items["minCvssScore"].type == "number" and items["minCvssScore"].label == "Min cvss score"
    assert items["minCvssScore"].check("7.5") == "" and items["minCvssScore"].check("high")
    assert items["Verbose"].check("yes") == "" and items["Verbose"].check("maybe") == \
        "Verbose must be yes or no (you entered “maybe”)."
    assert items["environmentKeywords"].label == "Environment keywords"


def test_a_manifest_input_with_an_unknown_type_or_crossed_limits_is_refused_at_import(registry_world):
    text = (FIXTURES / "CVEBriefing.yaml").read_text()
    bad = text.replace("            Required: true", "            Required: true\n            Type: colour\n"
                       "            Minimum: 5\n            Maximum: 1", 1)
    with pytest.raises(manifests.ManifestError) as refused:
        manifests.parse_manifest(bad.encode(), "CVEBriefing.yaml")
    message = " ".join(refused.value.messages)
    assert "Type must be one of string, integer, number, boolean" in message
    assert "Minimum must not be more than its Maximum" in message


def test_a_failed_run_does_not_offer_rate_the_output(client, registry_world):
    w = registry_world
    session = _hygiene_session(w)
    run = runs.run_start(actor=w.contributor, session=session, inputs={})
    Run.objects.filter(pk=run.pk).update(status="failed", error="The agent failed: RuntimeError.")
    client.force_login(w.contributor)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert "Rate the output" not in page and 'action="' + reverse("run-feedback", args=[run.pk]) not in page
    assert "has no output to rate" in page
    session_page = client.get(reverse("session-detail", args=[session.pk])).content.decode()
    assert "Rate this output" not in session_page
    response = client.post(reverse("run-feedback", args=[run.pk]), {"rating": "4"})
    assert "This run failed: it has no output to rate." in response.content.decode()
    assert not Feedback.objects.exists()
