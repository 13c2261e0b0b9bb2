"""Add a key credential or a federated credential to an agent (R28; docs/oauth.md, "Agents without secrets")."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from agents import trust
from agents.models import Agent
from portal.models import User, Workspace


class Command(BaseCommand):
    help = ("Give an agent a credential that is not a secret: a public key (--jwk FILE: a public JWK or a PEM) or a "
            "federated credential (--federated --issuer URL --subject SUBJECT --audience AUDIENCE). Prints the new "
            "credential's id. Without --as the system is the actor.")

    def add_arguments(self, parser):
        parser.add_argument("agent", help="The agent's name in the workspace (or its client id).")
        parser.add_argument("--workspace", required=True, help="The workspace's slug.")
        kind = parser.add_mutually_exclusive_group(required=True)
        kind.add_argument("--jwk", metavar="FILE", help="A file holding the agent's public key: a JWK or a PEM.")
        kind.add_argument("--federated", action="store_true", help="Add a federated credential (a trust rule).")
        parser.add_argument("--issuer", help="The platform's token issuer, exactly as its tokens' iss.")
        parser.add_argument("--subject", help="The token's sub, exactly (e.g. system:serviceaccount:NS:NAME).")
        parser.add_argument("--audience", help="A value the token's aud must contain.")
        parser.add_argument("--name", default="", help="A label for the federated credential.")
        parser.add_argument("--as", dest="as_user", metavar="USERNAME",
                            help="Act as this person: only what they may do is done.")

    def handle(self, *args, agent: str, workspace: str, jwk: str | None, federated: bool, issuer: str | None,
               subject: str | None, audience: str | None, name: str, as_user: str | None, **options):
        target = Workspace.objects.filter(slug=workspace).first()
        if target is None:
            raise CommandError(f"No workspace has the slug '{workspace}'.")
        found = Agent.objects.filter(workspace=target, name=agent).first() or \
            Agent.objects.filter(workspace=target, identity__client_id=agent).first()
        if found is None:
            raise CommandError(f"No agent called '{agent}' is in the workspace '{workspace}'.")
        actor = None
        if as_user:
            actor = User.objects.filter(username=as_user, is_active=True).first()
            if actor is None:
                raise CommandError(f"No active user is called '{as_user}'.")
        try:
            if federated:
                missing = [f"--{n}" for n, v in (("issuer", issuer), ("subject", subject), ("audience", audience))
                           if not v]
                if missing:
                    raise CommandError(f"A federated credential needs {', '.join(missing)}.")
                credential = trust.federated_credential_add(actor=actor, agent=found, issuer=issuer,
                                                            subject=subject, audience=audience, name=name)
            else:
                if issuer or subject or audience:
                    raise CommandError("--issuer, --subject and --audience go with --federated, not --jwk.")
                try:
                    with open(jwk, encoding="utf-8") as stream:
                        text = stream.read(trust.MAX_KEY_INPUT + 1)
                except (OSError, UnicodeDecodeError) as error:
                    raise CommandError(f"Cannot read {jwk}: {getattr(error, 'strerror', None) or error}.") from None
                credential = trust.key_credential_add(actor=actor, agent=found, jwk=text)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        except PermissionDenied as error:
            raise CommandError(str(error)) from None
        self.stdout.write(str(credential.pk))
