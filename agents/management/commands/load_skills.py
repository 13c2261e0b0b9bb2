"""Fill the skills catalog from the Security Copilot skills list and apply the shipped skill map (idempotent)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agents import catalog


class Command(BaseCommand):
    help = "Load skillsets and skills from a Security Copilot skills CSV and apply the skill map. Safe to rerun."

    def add_arguments(self, parser):
        parser.add_argument("--file", default=str(catalog.DEFAULT_SKILLS_CSV),
                            help="PluginName,SkillName,SkillDescription CSV (default: the shipped skills list).")

    def handle(self, *args, file: str, **options):
        try:
            counts = catalog.load_skills(file)
        except FileNotFoundError:
            raise CommandError(f"{file}: no such file") from None
        except (ValidationError, UnicodeDecodeError) as error:
            messages = getattr(error, "messages", None) or [str(error)]
            raise CommandError(f"{file}: {'; '.join(messages)}") from None
        self.stdout.write(f"{counts['rows']} rows: {counts['skillsets']} skillsets, {counts['skills']} skills.")
        for key, value in counts.items():
            if key not in ("rows", "skillsets", "skills"):
                self.stdout.write(f"  {key.replace('_', ' ')}: {value}")
        changed = any(v for k, v in counts.items() if k not in ("rows", "skillsets", "skills"))
        self.stdout.write(self.style.SUCCESS("Catalog updated." if changed else "Catalog already up to date."))
