"""Fixtures shared with other test folders: the loopback archive and the environment pointing
at it (tests/fetch)."""

from tests.fetch.conftest import archive_env, loopback  # noqa: F401
