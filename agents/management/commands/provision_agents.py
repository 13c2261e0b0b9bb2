"""Provision agents from a CSV or JSON bulk file (R9): all-or-nothing, row-numbered errors."""

from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from agents import bulk
from agents.registry import ProvisioningError
from portal.models import User, Workspace


class Command(BaseCommand):
    help = ("Create the agents of a bulk file in a workspace, all or none. Without --as the system is the actor. "
            "--secrets-out writes name,client_id,client_secret to a new file readable by you only (mode 0600).")

    def add_arguments(self, parser):
        parser.add_argument("file", help="The bulk file (.csv or .json).")
        parser.add_argument("--workspace", required=True, help="The workspace's slug.")
        parser.add_argument("--dry-run", action="store_true", help="Check everything, write nothing.")
        parser.add_argument("--secrets-out", metavar="PATH",
                            help="A new file (never overwritten) for the new agent identities' client secrets.")
        parser.add_argument("--as", dest="as_user", metavar="USERNAME",
                            help="Act as this person: their workspace role limits what they may set up.")

    def handle(self, *args, file: str, workspace: str, dry_run: bool, secrets_out: str | None,
               as_user: str | None, verbosity: int = 1, **options):
        target = Workspace.objects.filter(slug=workspace).first()
        if target is None:
            raise CommandError(f"No workspace has the slug '{workspace}'.")
        actor = None
        if as_user:
            actor = User.objects.filter(username=as_user, is_active=True).first()
            if actor is None:
                raise CommandError(f"No active user is called '{as_user}'.")
        if secrets_out and dry_run and os.path.lexists(secrets_out):
            raise CommandError(f"{secrets_out} already exists; a real run would refuse to overwrite it.")
        descriptor = self._create_secrets_file(secrets_out) if secrets_out and not dry_run else None
        try:
            result = self._provision(file, target, actor, dry_run, descriptor, verbosity)
        except BaseException:
            if descriptor is not None:
                os.close(descriptor)
                os.unlink(secrets_out)  # we created it empty; nothing was provisioned
            raise
        if descriptor is not None:
            os.close(descriptor)
        self._report(result, target, secrets_out)

    def _create_secrets_file(self, path: str) -> int:
        """Created before provisioning, so agents are never made whose secrets could not be saved."""
        try:
            return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            raise CommandError(f"{path} already exists; refusing to overwrite it (secrets files are never "
                               f"replaced). Choose a new path.") from None
        except OSError as error:
            raise CommandError(f"Cannot create {path}: {error.strerror}.") from None

    def _provision(self, path: str, workspace: Workspace, actor: User | None, dry_run: bool,
                   descriptor: int | None, verbosity: int) -> bulk.BulkResult:
        try:
            stream = open(path, "rb")  # closed below; the parser decodes UTF-8, BOM or not
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        bars: list[tqdm] = []  # the bar appears once the file is valid and its size known (progress(0, total))

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(tqdm(desc="Provisioning", unit="agent", total=total, file=sys.stderr,
                                 disable=verbosity == 0))
            bars[0].update(done - bars[0].n)

        try:
            with stream, transaction.atomic():
                result = bulk.provision_file(actor=actor, workspace=workspace, stream=stream,
                                             filename=os.path.basename(path), dry_run=dry_run, progress=progress)
                if descriptor is not None:  # inside the transaction: if the secrets cannot be written, no agents
                    with os.fdopen(descriptor, "w", encoding="utf-8", newline="", closefd=False) as secrets_file:
                        secrets_file.write(bulk.secrets_csv(result.created))
                    os.fsync(descriptor)
        except ProvisioningError as refusal:
            self._close(bars)
            for problem in refusal.problems:
                self.stderr.write(ProvisioningError.describe(problem))
            raise CommandError(f"{len(refusal.problems)} problem(s) in {path}; nothing was created.") from None
        finally:
            self._close(bars)
        return result

    @staticmethod
    def _close(bars: list[tqdm]) -> None:
        while bars:
            bars.pop().close()

    def _report(self, result: bulk.BulkResult, workspace: Workspace, secrets_out: str | None) -> None:
        if result.dry_run:
            self.stdout.write(self.style.SUCCESS(
                f"Dry run: {result.total} agents would be created in {workspace.slug}; nothing was written."))
            return
        identities = sum(1 for p in result.created if p.client_secret)
        self.stdout.write(self.style.SUCCESS(
            f"Created {len(result.created)} agents in {workspace.slug} ({identities} with an agent identity)."))
        if not identities:
            return
        if secrets_out:
            self.stdout.write(f"Client secrets of the {identities} new identities are in {secrets_out} (mode "
                              f"0600). Move them to a vault and delete the file.")
        else:
            self.stderr.write(self.style.WARNING(
                f"The {identities} new client secrets were not saved (no --secrets-out) and are not stored "
                f"anywhere; rotate the agents' credentials to issue new ones."))
