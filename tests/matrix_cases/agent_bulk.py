"""Permission-matrix cases for the agents list's bulk actions, CSV export and bulk-upload template.

Anyone who sees the agents gets the confirmation page (it says who may not act and why); confirming is for those
who may act on every selected agent (a contributor: 403); another workspace's agents are 404.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import EVERYONE_OK, LOGIN, Case, expect


def _bulk(w):
    return reverse("agent-bulk") + f"?agent={w.agent.pk}&action=disable"


CASES = [
    Case("agent-bulk", "GET", _bulk, expect(LOGIN, 200, 200, 200, 200, 404)),
    Case("agent-bulk", "POST", lambda w: reverse("agent-bulk"), expect(LOGIN, 403, 302, 302, 302, 404),
         data=lambda w: {"agent": w.agent.pk, "action": "disable"}),
    Case("agent-export", "GET", lambda w: reverse("agent-export"), EVERYONE_OK),
    Case("bulk-template", "GET", lambda w: reverse("bulk-template"), EVERYONE_OK),
]


def _finished_run(w):
    from tests.matrix_cases.runs import _finished_run as finished

    return finished(w)[0]


# A run's findings applied together: whoever may see the run reaches the view; with nothing selected it answers
# with a message (302); another workspace's run is 404.
CASES += [
    Case("run-apply-many", "POST", lambda w: reverse("run-apply-many", args=[_finished_run(w).pk]),
         expect(LOGIN, 302, 302, 302, 302, 404), label="run-apply-many (nothing selected: a message)"),
]

# The pickers answer every signed-in person, with only what that person may see.
CASES += [
    Case("picker-people", "GET", lambda w: reverse("picker-people") + "?q=own", EVERYONE_OK),
    Case("picker-agents", "GET", lambda w: reverse("picker-agents") + "?q=matrix", EVERYONE_OK),
]

# The icon is public, like robots.txt: everyone is sent to the static file.
CASES += [Case("favicon", "GET", lambda w: "/favicon.ico", expect(301, 301, 301, 301, 301, 301))]
