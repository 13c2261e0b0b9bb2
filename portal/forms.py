"""Forms: parse and validate input only; every change is made by a service."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from portal.choices import ActorKind, JobStatus, UserKind, WorkspaceRole
from portal.models import DirectoryRole, User
from portal.pickers import PickerInput


class StyledForm(forms.Form):
    """Gives every widget the layout's form classes, so templates render fields without per-field markup."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            widget = field.widget
            css = "form-select" if isinstance(widget, forms.Select) else "form-control"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()
            if field.help_text:
                widget.attrs.setdefault("aria-describedby", f"{self[name].id_for_label}_help")


class UsernameField(forms.CharField):
    """A username typed in (constant cost however large the directory is), resolved to an active person."""

    def __init__(self, *args, humans_only: bool = True, **kwargs):
        kwargs.setdefault("max_length", 150)
        super().__init__(*args, **kwargs)
        self.humans_only = humans_only

    def clean(self, value):
        username = super().clean(value)
        if not username:
            return None
        user = User.objects.filter(username__iexact=username.strip()).first()
        if user is None:
            raise forms.ValidationError(f"No user is called '{username}'.")
        if not user.is_active:
            raise forms.ValidationError(f"{user.username} is deactivated.")
        if self.humans_only and user.kind != UserKind.HUMAN:
            raise forms.ValidationError(f"{user.username} is an agent user, not a person.")
        return user


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match an active account.",
    }


class MemberAddForm(StyledForm):
    user = UsernameField(label="Username", widget=PickerInput())
    role = forms.ChoiceField(choices=WorkspaceRole.choices, initial=WorkspaceRole.CONTRIBUTOR)


class MemberRoleForm(StyledForm):
    role = forms.ChoiceField(choices=WorkspaceRole.choices)


class WorkspaceCreateForm(StyledForm):
    name = forms.CharField(max_length=100)
    slug = forms.SlugField(max_length=50, required=False, label="Short name",
                           help_text="Used in addresses; made from the name if left empty.")
    description = forms.CharField(max_length=300, required=False)
    owners = forms.CharField(
        label="Owners", widget=PickerInput(multiple=True),
        help_text="Type part of a name and choose; separate several with a semicolon. A workspace needs two "
                  "effective owners.",
    )

    def clean_owners(self):
        names = [n.strip() for n in self.cleaned_data["owners"].replace(";", ",").split(",") if n.strip()]
        field = UsernameField()
        return [field.clean(name) for name in dict.fromkeys(names)]


class UserCreateForm(StyledForm):
    username = forms.RegexField(regex=r"^[\w.@+-]+$", max_length=150,
                                error_messages={"invalid": "Letters, digits and @/./+/-/_ only."})
    display_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False)
    manager = UsernameField(required=False, widget=PickerInput())
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), required=False,
                               help_text="At least 12 characters. Leave empty to create the user without "
                                         "a usable password.")


class UserUpdateForm(StyledForm):
    display_name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField(required=False)
    manager = UsernameField(required=False, widget=PickerInput())


class RoleAssignForm(StyledForm):
    role = forms.ModelChoiceField(queryset=DirectoryRole.objects.order_by("name"), empty_label=None)


class AuditFilterForm(StyledForm):
    actor = forms.CharField(required=False, label="Actor")
    actor_kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *ActorKind.choices],
                                   label="Actor kind")
    action = forms.CharField(required=False, help_text="e.g. workspace.member_add, or a prefix: workspace.")
    target = forms.CharField(required=False, help_text="Type, id or label of the object changed.")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("'From' must be on or before 'To'.")
        return data





class UsernameListField(forms.CharField):
    """Usernames separated by ``;`` (or ``,``), chosen with a people picker."""

    widget = PickerInput(multiple=True)

    def clean(self, value):
        raw = super().clean(value) or ""
        single = UsernameField()
        return [single.clean(n.strip()) for n in dict.fromkeys(raw.replace(";", ",").split(",")) if n.strip()]


class JobRunFilterForm(forms.Form):
    """The Jobs page's filters: one job, one outcome, and whether routine successes of frequent jobs are shown."""

    job = forms.ChoiceField(required=False, label="Job")
    status = forms.ChoiceField(required=False, label="Outcome", choices=[("", "Any outcome"), *JobStatus.choices])
    routine = forms.BooleanField(required=False, label="Show every successful run of the frequent jobs")

    def __init__(self, *args, job_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["job"].choices = [("", "Every job"), *[(name, name) for name in job_names]]


class ChangeRejectForm(StyledForm):
    reason = forms.CharField(label="Why reject it", max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                             error_messages={"required": "Give a reason for rejecting the change."})


class ChangeReviewForm(StyledForm):
    verdict = forms.ChoiceField(label="Your review", choices=[("confirm", "The change was right"),
                                                               ("flag", "Flag it: something is wrong")])
    note = forms.CharField(label="Note", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                           help_text="Required when you flag the change.")


class FourEyesSettingsForm(StyledForm):
    """One on/off field per registered kind of change, and the bulk retirement threshold."""

    bulk_retire_threshold = forms.IntegerField(
        label="Retiring more than this many agents at once needs a second administrator", min_value=1,
        max_value=100000)

    def __init__(self, *args, kinds=(), **kwargs):
        super().__init__(*args, **kwargs)
        for spec in kinds:
            self.fields[f"kind_{spec.name}"] = forms.BooleanField(label=spec.label, required=False)
            self.fields[f"kind_{spec.name}"].widget.attrs["class"] = "form-check-input"

    def high_impact(self) -> dict[str, bool]:
        return {name.removeprefix("kind_"): value for name, value in self.cleaned_data.items()
                if name.startswith("kind_")}
