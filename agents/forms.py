"""Registry forms: parse input only; the rules live in ``agents.registry`` and ``agents.catalog``."""

from __future__ import annotations

from django import forms
from django.utils import timezone

from agents.choices import AgentScope, IdentityType, PublisherKind
from agents.models import Skillset
from portal.forms import StyledForm, UsernameField
from portal.models import Permission
from portal.pickers import PickerInput

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class UsernamesField(forms.CharField):
    """Usernames of active people separated by ``;`` (or ``,``), as the bulk file takes them; a people picker."""

    widget = PickerInput(multiple=True)

    def clean(self, value):
        raw = super().clean(value) or ""
        names = [n.strip() for n in raw.replace(";", ",").split(",") if n.strip()]
        single = UsernameField()
        return [single.clean(name) for name in dict.fromkeys(names)]


class AttributesField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3, "placeholder": "e.g. department=Security"})

    def clean(self, value):
        raw = super().clean(value) or ""
        attributes = {}
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, val = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Line {number}: write key=value.")
            attributes[key.strip()] = val.strip()
        return attributes


class AgentSetupForm(StyledForm):
    """Steps 2–6 of the setup wizard (the blueprint was chosen in step 1)."""

    name = forms.CharField(max_length=150)
    identity_type = forms.ChoiceField(choices=IdentityType.choices, widget=forms.RadioSelect, label="Identity")
    run_as_user = UsernameField(required=False, label="Run as user account", widget=PickerInput(),
                                help_text="For an existing user account: the agent has exactly this user's rights "
                                          "and stops when the user is disabled.")
    with_agent_user = forms.BooleanField(required=False, initial=True, label="Create an agent user",
                                         help_text="For an agent identity: a 1:1 user account for the agent, with no "
                                                   "password, for systems that need a user object.")
    scope = forms.ChoiceField(choices=AgentScope.choices, widget=forms.RadioSelect)
    sponsors = UsernamesField(help_text="People accountable for the agent; at least one. Type part of a name and "
                                        "choose; separate several with a semicolon.")
    owners = UsernamesField(help_text="People who manage the agent; at least one. Type part of a name and choose; "
                                      "separate several with a semicolon.")
    attributes = AttributesField(required=False, label="Custom security attributes",
                                 help_text="One key=value per line; conditional-access policies can match them.")
    justification = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                                    help_text="Why this agent is needed. Sent to the Global Administrators when the "
                                              "blueprint needs their approval.")
    expires_at = forms.DateTimeField(required=False, label="Expires",
                                     widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                     help_text="Optional. Disabled at expiry, retired after the grace period.")

    def __init__(self, *args, identity_choices=None, scope_choices=None, **kwargs):
        super().__init__(*args, **kwargs)
        if identity_choices is not None:
            self.fields["identity_type"].choices = identity_choices
        if scope_choices is not None:
            self.fields["scope"].choices = scope_choices
        for name in ("identity_type", "scope"):
            self.fields[name].widget.attrs.pop("class", None)
        self.fields["with_agent_user"].widget.attrs["class"] = "form-check-input"

    def clean(self):
        data = super().clean()
        if data.get("identity_type") == IdentityType.USER_ACCOUNT and not data.get("run_as_user") \
                and "run_as_user" not in self.errors:
            self.add_error("run_as_user", "Choose the user account the agent runs as.")
        return data

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value)
        return value


class PersonForm(StyledForm):
    user = UsernameField(label="Username")
    role = forms.ChoiceField(choices=[("sponsor_agent", "Sponsor"), ("own_agent", "Owner")])


class AttributeForm(StyledForm):
    key = forms.CharField(max_length=64)
    value = forms.CharField(max_length=256, required=False)


class AttributeSetForm(StyledForm):
    """An attribute set and its keys (the rules live in ``agents.attributes``)."""

    name = forms.CharField(max_length=64)
    description = forms.CharField(max_length=300, required=False)
    protected = forms.BooleanField(required=False, initial=True,
                                   help_text="Only Global Administrators and Attribute Assignment Administrators "
                                             "assign, change or remove the attributes of a protected set.")
    keys = forms.CharField(required=False, label="Attribute keys", widget=forms.Textarea(attrs={"rows": 3}),
                           help_text="One per line or comma-separated, e.g. tier, clearance.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["protected"].widget.attrs["class"] = "form-check-input"

    def clean_keys(self):
        raw = self.cleaned_data["keys"] or ""
        return [k.strip() for k in raw.replace(",", "\n").splitlines() if k.strip()]


class BlueprintUploadForm(StyledForm):
    manifest = forms.FileField(help_text="A Security Copilot agent manifest, YAML or JSON.")
    publisher_kind = forms.ChoiceField(
        required=False, choices=[("", "From the manifest's Publisher"), *PublisherKind.choices],
        label="Publisher kind", help_text="Microsoft → Microsoft, Custom → organisation, any other name → partner.")


def _grantable_permissions():
    return Permission.objects.filter(kind="application", privileged=False).order_by("product", "name")


class SkillMapForm(StyledForm):
    permissions = forms.ModelMultipleChoiceField(queryset=_grantable_permissions(), required=False,
                                                 widget=forms.SelectMultiple(attrs={"size": 12}))
    needs_no_permission = forms.BooleanField(required=False, label="Reads no protected data")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["permissions"].queryset = _grantable_permissions()
        self.fields["needs_no_permission"].widget.attrs["class"] = "form-check-input"


class ResolveSkillForm(SkillMapForm):
    skillset = forms.ModelChoiceField(queryset=Skillset.objects.order_by("name"),
                                      help_text="The skillset (plugin) that provides this skill.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["skillset"].queryset = Skillset.objects.order_by("name")


class BulkUploadForm(StyledForm):
    file = forms.FileField(help_text="CSV with header blueprint,name,identity_type,scope,sponsors,owners,attributes,"
                                     "expires_at — or JSON, a list of objects with the same keys.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"The file is {upload.size / 1e6:.1f} MB; uploads are at most 20 MB.")
        try:
            return upload.name, upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise forms.ValidationError("The file is not UTF-8 text.") from error


class KeyCredentialForm(StyledForm):
    """A public key (a JWK or a PEM, pasted or uploaded) or a ``jwks_uri`` (R28); ``agents.trust`` checks it."""

    public_key = forms.CharField(required=False, max_length=16 * 1024, widget=forms.Textarea(attrs={
        "rows": 4, "placeholder": '{"kty": "EC", "crv": "P-256", "x": "…", "y": "…"}  or  -----BEGIN PUBLIC KEY-----'}),
        help_text="The public key only: a JWK or a PEM. A private key is refused.")
    key_file = forms.FileField(required=False, help_text="Or upload the JWK or PEM file.")
    jwks_uri = forms.URLField(required=False, max_length=255, assume_scheme="https",
                              help_text="Or the https URL where the agent publishes its keys.")
    expires_at = forms.DateTimeField(required=False, help_text="Empty: the longest lifetime allowed.")

    def clean(self):
        data = super().clean()
        upload = data.get("key_file")
        if upload is not None:
            if upload.size > 16 * 1024:
                raise forms.ValidationError("A key file is at most 16 KiB.")
            try:
                data["public_key"] = upload.read().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise forms.ValidationError("A key file is text (a JWK or a PEM).") from exc
        if bool(data.get("public_key", "").strip()) == bool(data.get("jwks_uri")):
            raise forms.ValidationError("Give a public key or a jwks_uri (one of them).")
        expires_at = data.get("expires_at")
        if expires_at is not None and timezone.is_naive(expires_at):
            data["expires_at"] = timezone.make_aware(expires_at)
        return data


class FederatedCredentialForm(StyledForm):
    """A trust rule: tokens from ``issuer`` for ``subject`` and ``audience`` authenticate the agent (R28)."""

    name = forms.CharField(required=False, max_length=120, help_text="A label, e.g. the cluster's name.")
    issuer = forms.CharField(max_length=255, help_text="The token's iss, exactly (an https URL).")
    subject = forms.CharField(max_length=255,
                              help_text="The token's sub, exactly, e.g. system:serviceaccount:NAMESPACE:NAME.")
    subject_is_pattern = forms.BooleanField(
        required=False, label="The subject is a pattern (* matches anything; administrators only)")
    audience = forms.CharField(max_length=255, help_text="A value the token's aud must contain.")
