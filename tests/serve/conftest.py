import pytest


@pytest.fixture
def installed_host(monkeypatch):
    """The installed plugins, freshly loaded. Attention routing asks the CLI's host override
    (set by `build_app(host)` in other tests, and never reset) or `get_host` for its backends:
    point both at the installed plugins for this test."""
    from astrobio_cli import cli, plugins

    host = plugins.load_host()
    monkeypatch.setattr(cli, "_HOST_OVERRIDE", None)
    monkeypatch.setattr(plugins, "get_host", lambda: host)
    return host
