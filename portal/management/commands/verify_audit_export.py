"""Check an audit export with inclusion proofs, offline (R23): no database is opened.

The file is what ``/audit/export/?format=json&proofs=1`` downloads. Every event is hashed as an RFC 9162 leaf and
its inclusion proof checked against the signed tree head in the file, whose Ed25519 signature is checked with the
public key in the file; ``--key-id`` (the id shown at ``/audit/log-key/``) pins that key. All the checking is in
``portal.merkle``, which imports nothing from Django.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from portal import merkle


class Command(BaseCommand):
    help = "Verify an audit export with proofs (JSON) without any database access. Exits non-zero on failure."
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("file", help="The exported JSON file (Export with proofs on the audit page).")
        parser.add_argument("--key-id", action="append", default=[],
                            help="Trust only this audit log key id (repeatable); by default the file's own key.")

    def handle(self, *args, file: str, key_id: list[str], **options):
        try:
            text = Path(file).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read {file}: {error}") from error
        check = merkle.verify_export(text, trusted_key_ids=key_id)
        if not check.ok:
            raise CommandError(f"The export does not verify: {check.first_problem}"
                               + "".join(f"\n- {problem}" for problem in (check.problems or [])[1:20]))
        self.stdout.write(self.style.SUCCESS(
            f"Export verified: {check.events} events are in the audit log's signed tree of {check.tree_size} "
            "events."))
