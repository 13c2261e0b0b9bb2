"""A removed access package (docs/design.md, R29) is kept for its history only: a new access review neither offers
nor accepts it, and its name is free again for a new package of the workspace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.access import services as access_packages
from governance.access.models import AccessPackage
from governance.reviews.campaigns import review_create
from governance.reviews.models import AccessReview
from portal.models import Permission

pytestmark = pytest.mark.django_db


def _package(w, name: str) -> AccessPackage:
    return access_packages.package_save(
        actor=w.owner, workspace=w.alpha, name=name, policy={"approver_kind": "none", "justification_required": False},
        permissions=Permission.objects.filter(name="SecurityIncident.Read.All", kind="application"))


@pytest.fixture
def removed(registry_world):
    w = registry_world
    w.kept, w.gone = _package(w, "Triage"), _package(w, "Legacy hunting")
    access_packages.package_remove(actor=w.owner, package=w.gone, reason="replaced by Triage")
    return w


def _form(**extra) -> dict:
    return {"name": "Packages", "scope_kind": "packages", "reviewer_kind": "sponsors", "recurrence": "once",
            "starts_at": (timezone.now() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"), "duration_days": 7,
            "no_response": "keep", **extra}


def test_r29_the_review_form_offers_only_packages_not_removed(removed, client):
    w = removed
    client.force_login(w.owner)
    response = client.get("/governance/reviews/new/")
    assert response.status_code == 200
    offered = list(response.context["form"].fields["packages"].queryset)
    assert offered == [w.kept]
    assert "Legacy hunting" not in response.content.decode() and "Triage" in response.content.decode()


def test_r29_a_removed_package_posted_anyway_is_refused_with_a_clear_message(removed, client):
    w = removed
    client.force_login(w.owner)
    response = client.post("/governance/reviews/new/", _form(packages=[w.kept.pk, w.gone.pk]))
    assert response.status_code == 200
    assert response.context["form"].errors["packages"] == [
        "Choose the access packages from the list: a removed package, or one of another workspace, cannot be "
        "reviewed."]
    assert not AccessReview.objects.filter(name="Packages").exists()
    # The service refuses it too, whoever calls it (the pages, the demo, a script).
    with pytest.raises(ValidationError) as refused:
        review_create(actor=w.owner, workspace=w.alpha, name="Packages", scope_kind="packages",
                      packages=[w.kept, w.gone], reviewer_kind="sponsors", starts_at=timezone.now(), duration_days=7)
    assert refused.value.messages == ["Removed access packages cannot be reviewed: Legacy hunting."]
    assert not AccessReview.objects.filter(name="Packages").exists()
    # Without it, the same review is created.
    response = client.post("/governance/reviews/new/", _form(packages=[w.kept.pk]))
    assert response.status_code == 302
    assert list(AccessReview.objects.get(name="Packages").packages.all()) == [w.kept]


def test_r29_a_removed_packages_name_can_be_used_again_once(removed):
    w = removed
    again = _package(w, "Legacy hunting")
    assert again.pk != w.gone.pk and again.removed_at is None
    assert {pk: removed_at is None for pk, removed_at in AccessPackage.objects.filter(
        workspace=w.alpha, name="Legacy hunting").values_list("pk", "removed_at")} == {w.gone.pk: False, again.pk: True}
    with pytest.raises(ValidationError, match="A package called 'Legacy hunting' already exists"):
        _package(w, "Legacy hunting")
    with pytest.raises(ValidationError, match="A package called 'Triage' already exists"):
        access_packages.package_save(actor=w.owner, workspace=w.alpha, name="Triage", package=again,
                                     policy={}, permissions=again.permissions.all())
    # The database says the same: two packages not removed never share a name in a workspace.
    with pytest.raises(IntegrityError), transaction.atomic():
        AccessPackage.objects.create(workspace=w.alpha, name="Triage")
    w.gone.refresh_from_db()
    assert w.gone.name == "Legacy hunting" and w.gone.removed_at is not None  # its history keeps the name
