"""Recompute the audit log's Merkle tree and check every signed tree head (R23); exit 1 naming the first changed,
deleted or inserted event, or forged tree head."""

from django.core.management.base import BaseCommand, CommandError

from portal import audit_log

SHOWN_PROBLEMS = 20


class Command(BaseCommand):
    help = ("Verify the audit log: the Merkle tree recomputed from the events against every signed tree head, the "
            "consistency of consecutive heads and the old hash chain. Exits non-zero and names the first problem.")

    def add_arguments(self, parser):
        parser.add_argument("--no-sequence", action="store_true",
                            help="Do not integrate pending events first (by default they are, so they are checked).")

    def handle(self, *args, no_sequence: bool = False, **options):
        if not no_sequence:
            try:
                audit_log.sequence()
            except audit_log.SequencerConflict as conflict:
                self.stderr.write(f"Pending events were not integrated: {conflict}")
        check = audit_log.verify_log()
        if not check.ok:
            messages = check.messages
            more = f"\n… and {len(messages) - SHOWN_PROBLEMS} more." if len(messages) > SHOWN_PROBLEMS else ""
            raise CommandError(
                f"Audit trail broken: {messages[0]}\n"
                + "\n".join(f"- {message}" for message in messages[:SHOWN_PROBLEMS]) + more
                + f"\n{check.events_checked} events and {check.heads_checked} tree heads checked.")
        head = audit_log.latest_head()
        self.stdout.write(self.style.SUCCESS(f"Audit trail intact: {check.events_checked} events verified."))
        self.stdout.write(f"{check.heads_checked} signed tree heads and their consistency checked"
                          + (f"; the newest: {head.size} events, root {head.root_hash}." if head else ".")
                          + (f" Old hash chain: {check.legacy_events_checked} events verified."
                             if check.legacy_events_checked else "")
                          + (f" {check.pending} events pending sequencing (not yet covered)." if check.pending
                             else ""))
