"""Every hook is documented: what, when, each argument, an example (datasette's test_docs style)."""

from __future__ import annotations

import inspect

import pytest

from astrobio_cli import hookspecs

HOOKS = [
    "register_models",
    "register_data_sources",
    "register_attention_backends",
    "register_commands",
]


def test_the_contract_has_exactly_these_hooks():
    found = sorted(
        n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "astrobio_spec")
    )
    assert found == sorted(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_fully_documented(name):
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert "When:" in doc
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc
    assert "Example::" in doc and "@hookimpl" in doc


@pytest.mark.parametrize("name", HOOKS)
def test_readme_documents_hook(name):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert name in readme
