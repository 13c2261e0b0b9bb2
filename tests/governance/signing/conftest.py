"""Each test starts and ends with this process's key cache empty: keys are rows rolled back between tests."""

import pytest

from governance.signing import keys


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    keys.forget()
    yield
    keys.forget()
