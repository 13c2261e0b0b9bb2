"""Recompute the audit trail's hash chain (R23); exit 1 and name the first broken event if it was tampered with."""

from django.core.management.base import BaseCommand, CommandError

from portal import audit


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain. Exits non-zero and names the first broken event."

    def handle(self, *args, **options):
        check = audit.verify_chain()
        if not check.ok:
            raise CommandError(
                f"Audit trail broken at event #{check.broken_event_id}: {check.reason}. "
                f"{check.checked} events before it verified."
            )
        self.stdout.write(self.style.SUCCESS(f"Audit trail intact: {check.checked} events verified."))
