"""The usage rollup: one row per agent, UTC day, granted scope and resource (docs/design.md, "Usage").

Rows are written only by the ``rollup_sign_ins`` job (``governance.usage.rollup``), never on the token path. They
refer to the agent, never to a sign-in row: the sign-in log is cut into time partitions that retention drops whole,
and the rollup keeps the history the log no longer holds.
"""

from django.db import models

from agents.models import Agent


class SignInUsage(models.Model):
    """What one agent's token requests of one UTC day came to, for one granted scope and one resource.

    A sign-in that granted several scopes counts once in the row of each; a sign-in that granted none (every
    failure, and a success without scopes) counts in the row whose ``scope`` is empty. ``first_used_at`` and
    ``last_used_at`` are the first and last *successful* sign-ins of the row (a use, in the portal's one
    definition), empty when the row holds only failures."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField(help_text="The UTC day of the sign-ins.")
    scope = models.CharField(max_length=150, blank=True, help_text="A granted scope; empty: none was granted.")
    resource = models.CharField(max_length=300, blank=True, help_text="The resource (audience) asked for.")
    successes = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)
    blocked = models.PositiveBigIntegerField(default=0, help_text="Refused by conditional access.")
    first_used_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "scope", "resource", "day"],
                                               name="usage_one_row_per_agent_scope_resource_day")]

    def __str__(self) -> str:
        return f"agent {self.agent_id} {self.day} {self.scope or '(no scope)'} {self.resource}"


class SignInDay(models.Model):
    """What one agent's token requests of one UTC day came to, each sign-in counted once (docs/design.md, "Usage").

    ``SignInUsage`` counts a sign-in once per granted scope, right for "used" and wrong for a volume; this is the
    per-day total the agent page's timeline reads. Written by the same ``rollup_sign_ins`` batch, in the same
    transaction and from the same rows, so it is at the same watermark."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField(help_text="The UTC day of the sign-ins.")
    successes = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)
    blocked = models.PositiveBigIntegerField(default=0, help_text="Refused by conditional access.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "day"], name="usage_one_day_row_per_agent_day")]

    def __str__(self) -> str:
        return f"agent {self.agent_id} {self.day}: {self.successes + self.failures + self.blocked} sign-ins"


class SignInRollupMark(models.Model):
    """The rollup's watermark: one row, locked by the run that moves it.

    Every sign-in whose id is at most ``integrated_through`` is in ``SignInUsage`` and ``SignInDay``; the rest is
    the log's tail, which the usage selectors read directly. ``observed_id`` and ``observed_at`` are the highest
    sign-in id a run saw and when: ids up to it are integrated once no transaction that could still commit one of
    them is left (``governance.usage.rollup.settled``)."""

    name = models.CharField(max_length=40, primary_key=True, default="sign_ins")
    integrated_through = models.BigIntegerField(default=0)
    observed_id = models.BigIntegerField(null=True, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"sign-ins integrated through #{self.integrated_through}"


class PermissionUse(models.Model):
    """When an agent last used one permission on one UTC day (docs/design.md, "Usage"): a token carrying it was
    introspected as active by a resource server, authenticated a call to the portal API, or was issued to a run
    that asked for it. Written only by the fold of ``rollup_sign_ins`` from ``AccessToken.last_used_at``; like
    ``SignInUsage`` it names the agent, never a token, so the history outlives the tokens."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField(help_text="The UTC day of the use.")
    permission = models.CharField(max_length=150)
    last_used_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "permission", "day"],
                                               name="usage_one_row_per_agent_permission_day")]

    def __str__(self) -> str:
        return f"agent {self.agent_id} used {self.permission} on {self.day}"


class TokenUseMark(models.Model):
    """How far the fold of token use into ``PermissionUse`` has come: every token use noted before
    ``folded_through`` minus the overlap (``governance.usage.rollup.TOKEN_USE_OVERLAP``) is in the table; the
    selectors read later uses from the tokens themselves. One row, locked by the fold that moves it."""

    name = models.CharField(max_length=40, primary_key=True, default="tokens")
    folded_through = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token use folded through {self.folded_through}"
