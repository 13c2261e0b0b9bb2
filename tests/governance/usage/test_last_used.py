"""The registry's "Last used" (``agents.signals.last_used``) answered by governance.usage: the latest successful
sign-in, from the rollup and the log's tail, in one query whatever the length of the log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry
from agents import selectors as agent_selectors
from agents import signals as agent_signals
from governance.signin.models import SignIn
from governance.usage import rollup, selectors
from tests.factories import agent_spec

pytestmark = pytest.mark.django_db


def _row(agent, at, outcome="success") -> None:
    SignIn.objects.create(agent=agent, at=at, client_id=agent.identity.client_id, outcome=outcome,
                          granted_scopes=["User.Read.All"] if outcome == "success" else [])


def test_last_used_is_the_latest_success_per_agent_in_two_queries_from_the_rollup_and_the_tail(registry_world):
    w = registry_world
    beta = registry.agent_create(actor=w.other, workspace=w.beta, spec=agent_spec(
        w.blueprint, "beta-agent", sponsors=[w.other], owners=[w.other_b])).agent
    now = timezone.now()
    _row(w.agent, now - timedelta(hours=3))
    _row(beta, now - timedelta(hours=5))
    rollup.catch_up()
    _row(w.agent, now - timedelta(hours=1))  # the tail
    _row(w.agent, now, outcome="failure")  # an attempt, not a use
    _row(beta, now, outcome="blocked")
    with CaptureQueriesContext(connection) as ctx:
        used = selectors.last_used([w.agent.pk, beta.pk])
    assert len(ctx.captured_queries) == 2  # the watermark, then the rollup and the tail in one statement
    assert used == {w.agent.pk: now - timedelta(hours=1), beta.pk: now - timedelta(hours=5)}
    assert selectors.last_used([]) == {}
    rollup.catch_up()
    assert selectors.last_used([w.agent.pk, beta.pk]) == used


def test_usage_answers_the_registry_once_and_answers_are_merged(registry_world):
    def answers():
        return agent_signals.last_used.send(sender=None, agent_ids=[registry_world.agent.pk])

    assert len(answers()) == 1
    apps.get_app_config("usage").ready()  # connecting again changes nothing
    assert len(answers()) == 1
    later = timezone.now() + timedelta(days=1)
    extra = lambda agent_ids, **_: {registry_world.agent.pk: later}  # noqa: E731
    _row(registry_world.agent, timezone.now())
    agent_signals.last_used.connect(extra, weak=False, dispatch_uid="test.extra")
    try:
        assert agent_selectors.last_used([registry_world.agent.pk]) == {registry_world.agent.pk: later}
    finally:
        agent_signals.last_used.disconnect(dispatch_uid="test.extra")
