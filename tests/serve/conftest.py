import pytest


@pytest.fixture
def installed_host(monkeypatch):
    """The installed plugins, freshly loaded. Attention routing asks the active host (set by
    `build_app(host)` in other tests) or `get_host` for its backends: point both at the
    installed plugins for this test."""
    from astrobio_cli import plugins

    host = plugins.load_host()
    monkeypatch.setattr(plugins, "_ACTIVE", None)
    monkeypatch.setattr(plugins, "get_host", lambda: host)
    return host
