"""In Chromium at 1280 and 1024 px: the audit trail fits the window (it was 1,481 px wide), its "Change" column reads
"field: old → new" instead of raw JSON, and events not yet in the signed log say "pending sequencing"."""

from __future__ import annotations

import pytest
from django.db import transaction

from portal import audit, audit_log
from tests.browser.helpers import sign_in

LONG = "a-very-long-value-without-any-space-" * 6


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1280, 1024])
def test_audit_trail_fits_the_window_and_shows_readable_changes(live_server, browser, world, width):
    with transaction.atomic():
        audit.record(actor=world.ga, action="directory.user_update_with_a_long_action_name", target=world.newcomer,
                     before={"display_name": "Newcomer", "email": "n@x.test", "note": LONG, "groups": ["a", "b"]},
                     after={"display_name": "Nia Newcomer", "email": "n@x.test", "note": LONG + "changed",
                            "groups": ["a", "b", "c"], "manager_id": world.owner.pk})
    audit_log.sequence()
    with transaction.atomic():
        audit.record(actor=world.ga, action="test.waiting", target_label="written after the last sequencer run")
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    sign_in(page, live_server.url, world.ga.username)
    page.goto(f"{live_server.url}/audit/")
    widths = page.evaluate("""() => ({page: document.documentElement.scrollWidth,
                                     table: document.getElementById('audit-table').getBoundingClientRect().right})""")
    assert widths["page"] <= width and widths["table"] <= width, widths
    change = page.locator("#audit-table tbody tr").nth(1).locator("td").nth(6)  # newest first: the change is 2nd
    text = change.inner_text()
    assert "display name: Newcomer → Nia Newcomer" in text
    assert "groups: a, b → a, b, c" in text and "manager id: (not set) → " in text
    assert "email" not in text and "{" not in text  # unchanged fields left out; no raw JSON
    first = page.locator("#audit-table tbody tr").first
    assert "pending sequencing" in first.inner_text()
    assert "leaf " in page.locator("#audit-table tbody tr").nth(1).inner_text()
    assert "1 event pending sequencing" in page.locator("#audit-log-status").inner_text()
