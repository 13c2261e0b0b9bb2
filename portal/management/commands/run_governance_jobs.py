"""Run governance jobs synchronously, with the same code the Celery workers run (docs/design.md, Scheduled jobs)."""

from django.core.management.base import BaseCommand, CommandError

from portal import jobs
from portal.choices import JobStatus, JobTrigger


class Command(BaseCommand):
    help = "Run one governance job (--job NAME), or every job, now in this process; each records a JobRun."

    def add_arguments(self, parser):
        parser.add_argument("--job", choices=sorted(jobs.REGISTRY), help="The job to run (default: all).")

    def handle(self, *args, job: str | None, **options):
        names = [job] if job else sorted(jobs.REGISTRY)
        failed = []
        for name in names:
            run = jobs.job_execute(name, trigger=JobTrigger.COMMAND)
            line = f"{name}: {run.status} in {run.duration_seconds:.2f}s {run.counts}"
            if run.status == JobStatus.FAILED:
                failed.append(name)
                self.stderr.write(self.style.ERROR(f"{line}\n{run.error}"))
            else:
                self.stdout.write(self.style.SUCCESS(line))
        if failed:
            raise CommandError(f"Failed: {', '.join(failed)}")
