"""``{{ name|input_label:blueprint.inputs }}``: a run input's label in words, as the run form shows it."""

from django import template

from agents.inputs import declared_inputs, humanise

register = template.Library()


@register.filter
def input_label(name: str, declared) -> str:
    for item in declared_inputs(declared):
        if item.name == name:
            return item.label
    return humanise(str(name))
