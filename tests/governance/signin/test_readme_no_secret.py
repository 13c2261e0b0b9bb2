"""The README's "Run an agent with no secret" section, run as written: its ``add_credential`` command and its token
request, with the README's example issuer, audience, agent and workspace swapped for a local issuer and a test
workspace (nothing else changes)."""

from __future__ import annotations

import re
import shlex

import pytest
from django.conf import settings
from django.core.management import call_command

from agents import registry
from devkit.federation_issuer import FederationIssuer
from governance.signin import assertions
from governance.signin.models import SignIn
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

SECTION = "## Run an agent with no secret"


def _shell_blocks() -> list[str]:
    text = (settings.BASE_DIR / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


@pytest.fixture
def issuer(settings):
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    assertions.forget_keys()
    with FederationIssuer() as running:
        yield running
    assertions.forget_keys()


def test_r28_the_readme_runs_an_agent_with_no_secret_against_a_local_issuer(client, world, issuer):
    command, request = _shell_blocks()
    words = shlex.split(command.replace("\\\n", " "))
    manage = words[words.index("add_credential"):]
    agent_name, workspace = manage[1], manage[manage.index("--workspace") + 1]
    readme_issuer, subject = manage[manage.index("--issuer") + 1], manage[manage.index("--subject") + 1]
    audience = manage[manage.index("--audience") + 1]
    namespace, account = subject.split(":")[2:4]

    blueprint = make_blueprint("ClusterAgent", permissions=("User.Read.All",))
    agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, agent_name, sponsors=[world.owner], owners=[world.owner_b])).agent
    swap = {readme_issuer: issuer.issuer, workspace: world.alpha.slug}
    call_command("add_credential", *(swap.get(word, word) for word in manage[1:]), stdout=open("/dev/null", "w"))  # noqa: SIM115

    fields = dict(word.split("=", 1) for word in shlex.split(request.replace("\\\n", " ")) if "=" in word
                  and not word.startswith("http"))
    assert fields["client_id"] == "$CLIENT_ID" and fields["client_assertion"].startswith("$(cat ")
    fields["client_id"] = agent.identity.client_id
    fields["client_assertion"] = issuer.service_account_token(namespace, account, audience=audience)
    response = client.post("/oauth/token/", fields, REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200, response.content
    sign_in = SignIn.objects.order_by("-pk").first()
    assert (sign_in.agent, sign_in.outcome, sign_in.credential_type, sign_in.credential_issuer) == (
        agent, "success", "federated", issuer.issuer)
