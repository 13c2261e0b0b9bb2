"""Permission-matrix cases for this capability (appended to ``tests.permission_matrix.CASES``)."""

from __future__ import annotations

from tests.permission_matrix import Case, expect  # noqa: F401

CASES: list = []
