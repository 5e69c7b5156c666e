import pytest
from django.core.cache import cache

from tests.portal_fixtures import *  # noqa: F403


@pytest.fixture(autouse=True)
def _empty_cache():
    # The dashboard caches large agencies' numbers; each test starts without them.
    cache.clear()
    yield
    cache.clear()
