"""Process-wide state set by the root command's flags, kept free of heavy imports.

The root command records `--config` and the settings flags here on every invocation; importing
pydantic to validate them waits until a command actually reads a setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

config_path: Path | None = None
flags: dict[str, Any] = {}
loaded: Any = None  # settings.LoadedSettings once read


def configure(path: Path | str | None = None, new_flags: dict[str, Any] | None = None) -> None:
    """Set the command-line layer; settings are (re)read on next use."""
    global config_path, flags, loaded
    config_path = Path(path) if path is not None else None
    flags = dict(new_flags or {})
    loaded = None
