"""Pages for accepted sponsorship (R30; docs/sponsorship.md): "My sponsorships" and the page where the named person
accepts, declines, confirms again or hands a sponsorship over. Only the named person sees a sponsorship (else
404); every change is one call to ``agents.sponsorship``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import selectors, sponsorship
from agents.choices import SponsorshipState
from portal.models import User
from portal.viewutils import act

ANSWERS = {
    "accept": (sponsorship.sponsorship_accept, lambda s: f"You now sponsor {s.agent.name}."),
    "decline": (sponsorship.sponsorship_decline, lambda s: f"You declined to sponsor {s.agent.name}."),
    "attest": (sponsorship.sponsorship_attest,
               lambda s: f"You confirmed you sponsor {s.agent.name}; confirm again by {s.due_at:%Y-%m-%d}."),
}


@login_required
@require_GET
def my_sponsorships(request):
    rows = list(selectors.sponsorships_of(request.user))
    return render(request, "agents/sponsorships.html", {
        "pending": [s for s in rows if s.state == SponsorshipState.PENDING],
        "current": [s for s in rows if s.state != SponsorshipState.PENDING],
    })


@login_required
@require_http_methods(["GET", "POST"])
def sponsorship_answer(request, sponsorship_id: int):
    found = selectors.sponsorship_get(request.user, sponsorship_id)
    if request.method == "POST":
        answer = request.POST.get("answer", "")
        if answer not in ANSWERS:
            messages.error(request, "Choose accept, decline or confirm.")
            return redirect("sponsorship-answer", sponsorship_id=found.pk)
        service, success = ANSWERS[answer]
        extra = {"reason": request.POST.get("reason", "")} if answer == "decline" else {}
        act(request, service, success, sponsorship=found, **extra)
        return redirect("my-sponsorships")
    return render(request, "agents/sponsorship_answer.html", {"sponsorship": found})


@login_required
@require_POST
def sponsorship_transfer(request, sponsorship_id: int):
    found = selectors.sponsorship_get(request.user, sponsorship_id)
    username = (request.POST.get("user") or "").strip()
    to_user = User.objects.filter(username=username).first() if username else None
    if to_user is None:
        messages.error(request, "Name the person who should take the sponsorship over." if not username
                     else f"There is no person named {username}.")
        return redirect("sponsorship-answer", sponsorship_id=found.pk)
    act(request, sponsorship.sponsorship_transfer,
        lambda s: f"{s.user.username} is asked to take over; you stay the sponsor until they accept.",
        sponsorship=found, to_user=to_user)
    return redirect("my-sponsorships")
