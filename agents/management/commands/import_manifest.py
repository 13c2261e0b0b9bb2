"""Import Security Copilot agent manifests as blueprint versions."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agents import manifests
from agents.choices import PublisherKind


class Command(BaseCommand):
    help = ("Import agent manifests (YAML or JSON). Prints one line per file; continues past a bad file and exits "
            "non-zero at the end if any failed.")

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--publisher-kind", choices=PublisherKind.values, default=None,
                            help="Override the publisher kind the manifest declares.")

    def handle(self, *args, files: list[str], publisher_kind: str | None, **options):
        failed: list[str] = []
        for file in files:
            try:
                data = Path(file).read_bytes()
                result = manifests.blueprint_import(actor=None, data=data, filename=Path(file).name,
                                                    publisher_kind=publisher_kind)
            except OSError as error:
                failed.append(file)
                self.stderr.write(f"{file}: cannot read it ({error.strerror or error})")
                continue
            except ValidationError as error:
                failed.append(file)
                self.stderr.write(f"{file}: {'; '.join(error.messages)}")
                continue
            self.stdout.write(f"{file}: {self.describe(result)}")
        if failed:
            raise CommandError(f"{len(failed)} of {len(files)} files failed: {', '.join(failed)}")

    @staticmethod
    def describe(result: manifests.ImportResult) -> str:
        blueprint = result.blueprint
        label = f"{blueprint.name} v{blueprint.version}"
        if not result.created:
            line = f"{label} unchanged"
        else:
            line = f"{label} created ({blueprint.publisher_kind}"
            line += f", {len(blueprint.products)} products)" if blueprint.products else ")"
            diff = [f"+{name}" for name in result.added] + [f"-{name}" for name in result.removed]
            if result.previous is not None:
                line += f"; since v{result.previous.version}: {' '.join(diff) if diff else 'same permissions'}"
            elif diff:
                line += f"; permissions: {' '.join(diff)}"
        if result.unknown_skills:
            line += f"; incomplete, unknown skills: {', '.join(result.unknown_skills)}"
        return line
