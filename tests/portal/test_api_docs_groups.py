"""API docs: every operation sits under a tag named for what it acts on, with a one-line summary, and every tag used
has a sentence saying what it holds."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from portal.api_schema import TAG_DESCRIPTIONS

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


def test_every_api_operation_has_a_tag_and_a_one_line_summary():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = [(path, method, op) for path, item in schema["paths"].items()
                  for method, op in item.items() if method in METHODS]
    assert len(operations) > 40
    for path, method, op in operations:
        assert op["tags"] and set(op["tags"]) <= set(TAG_DESCRIPTIONS), (path, method, op["tags"])
        summary = op.get("summary", "")
        assert summary and "\n" not in summary and len(summary) <= 80, (path, method, summary)
    summaries = {(path, method): op["summary"] for path, method, op in operations}
    assert summaries[("/api/v1/agents/", "get")] == "List agents"
    assert summaries[("/api/v1/agents/{id}/retire/", "post")] == "Retire an agent"
    used = {tag for _path, _method, op in operations for tag in op["tags"]}
    assert [tag["name"] for tag in schema["tags"]] == [name for name in TAG_DESCRIPTIONS if name in used]
    assert all(tag["description"] for tag in schema["tags"])
