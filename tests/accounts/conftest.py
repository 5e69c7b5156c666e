from tests.portal_fixtures import *  # noqa: F403
