"""``manage.py register_resource_server NAME --identifier URI [--scopes "S1 S2"]``: register a resource server
(R26; docs/oauth.md, "Resource indicators") and print its client id and secret. The secret is printed once and
never stored in the clear: copy it into the resource server's configuration."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from governance.signin import tokens


class Command(BaseCommand):
    help = "Register a resource server (its identifier is the audience of its tokens) and print its credentials."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--identifier", required=True, help="An absolute https URI: the tokens' audience.")
        parser.add_argument("--scopes", default="", help='Space-separated scopes it accepts, e.g. "tickets.read".')

    def handle(self, *args, name: str, identifier: str, scopes: str, **options):
        try:
            server, secret = tokens.resource_server_create(actor=None, name=name, identifier=identifier,
                                                           scopes=scopes)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        self.stdout.write(f"identifier: {server.identifier}")
        self.stdout.write(f"scopes: {' '.join(server.scopes)}")
        self.stdout.write(f"client_id: {server.client_id}")
        self.stdout.write(f"client_secret: {secret}")
        self.stderr.write("The secret is shown once; store it now.")
