"""Settings: defaults < TOML file < environment (`ASTROBIO_`, nested with `__`) < command-line flags.

The file is `config.toml` in the user's config directory, or the path given by `--config` or
`ASTROBIO_CONFIG`. Every effective value remembers where it came from (`astrobio config show`).
A bad value is a :class:`SettingsError` naming the key, the value, its origin and what was expected.

Example file::

    data_dir = "/scratch/astrobio/data"
    threads = 8

    [attention]
    backend = "sdpa"

    [sources.nasa-exoplanet]
    base_url = "https://exoplanetarchive.ipac.caltech.edu"
    timeout = 60        # connect + response headers per attempt, and the longest silence
    deadline = 900      # one request in all, retries and waits included
    rate_limit = 2      # requests per second

Environment: `ASTROBIO_THREADS=8`, `ASTROBIO_ATTENTION__BACKEND=sdpa`,
`ASTROBIO_SOURCES__NCBI__API_KEY=...`, `ASTROBIO_SOURCES__CDS__API_KEY=...` (the
Copernicus Climate Data Store key) (source names with `_` for `-`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from astrobio_cli import _state
from astrobio_cli.errors import SettingsError

ENV_PREFIX = "ASTROBIO_"
CONFIG_ENV = "ASTROBIO_CONFIG"


def default_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("astrobio")) / "config.toml"


def _default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("astrobio"))


def _default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("astrobio"))


class SourceSettings(BaseModel):
    """Per data source: where it lives, how to authenticate, how hard to push it."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, description="override the service's base URL")
    api_key: SecretStr | None = Field(None, description="secret; never printed or logged")
    timeout: PositiveFloat = Field(
        30.0,
        description="seconds one attempt may take to connect and get the response headers, "
        "and the longest silence while a body streams",
    )
    deadline: PositiveFloat = Field(
        900.0,
        description="seconds one request may take in all: every attempt, retry wait and the "
        "whole body",
    )
    command_deadline: PositiveFloat = Field(
        3600.0, description="seconds one command may spend on this source's requests in all"
    )
    max_bytes: PositiveInt = Field(
        2 << 30, description="largest response body accepted, in bytes (default 2 GiB)"
    )
    rate_limit: PositiveFloat | None = Field(None, description="requests per second")
    retries: int = Field(5, ge=0, le=20, description="retries on connection errors, 429 and 5xx")
    backoff: PositiveFloat = Field(
        1.0, description="seconds before the first retry (doubles each retry, with jitter)"
    )
    # NCBI's E-utilities usage policy: every call names the tool and a contact email.
    tool: str = Field(
        "astrobio",
        pattern=r"^\S+$",
        description="ncbi only: the `tool` parameter sent with every E-utilities call",
    )
    email: str = Field(
        "",
        pattern=r"^$|^[^@\s]+@[^@\s]+$",
        description="ncbi only: the `email` parameter sent with every E-utilities call "
        "(empty: not sent); kept out of the cache key, messages and provenance",
    )


_NCBI_ONLY = ("tool", "email")


class AttentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str = Field("auto", description="'auto' or a backend name to force")
    window: PositiveInt = Field(256, description="keys per query of the sliding-window backend")


class Settings(BaseSettings):
    """Every setting astrobio reads."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(
        default_factory=_default_data_dir, description="fetched and generated data"
    )
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="download cache")
    runs_dir: Path = Field(Path("runs"), description="training runs (relative to the working dir)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    threads: PositiveInt | None = Field(None, description="worker threads (default: all cores)")
    native: bool = Field(True, description="use the Rust extension (false: the NumPy twin)")
    attention: AttentionSettings = Field(default_factory=AttentionSettings)
    sources: dict[str, SourceSettings] = Field(default_factory=dict)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("sources", mode="before")
    @classmethod
    def _normalise_source_names(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k).replace("-", "_").lower(): val for k, val in v.items()}
        return v

    @field_validator("sources", mode="after")
    @classmethod
    def _ncbi_only_keys(cls, v: dict[str, SourceSettings]) -> dict[str, SourceSettings]:
        for name, s in v.items():
            extra = sorted(k for k in _NCBI_ONLY if k in s.model_fields_set)
            if extra and name != "ncbi":
                raise ValueError(
                    f"sources.{name}.{extra[0]} is an NCBI setting: set sources.ncbi.{extra[0]}"
                )
        return v

    def source(self, name: str) -> SourceSettings:
        """Settings for data source `name` (kebab-case), defaults when none were given."""
        return self.sources.get(name.replace("-", "_"), SourceSettings())


@dataclass
class LoadedSettings:
    settings: Settings
    origins: dict[str, str]  # dotted key -> "default" | file path | "env VAR" | "flag --x"
    config_path: Path
    config_origin: str
    config_exists: bool
    raw: dict[str, Any] = field(default_factory=dict)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_leaves(v, key + "."))
        else:
            out[key] = v
    return out


def _env_var_for(key: str) -> str:
    return ENV_PREFIX + "__".join(p.upper().replace("-", "_") for p in key.split("."))


def _normalise_layer(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    if isinstance(d.get("sources"), dict):
        d["sources"] = {str(k).replace("-", "_").lower(): v for k, v in d["sources"].items()}
    return d


def load_settings(
    config_path: Path | str | None = None, flags: dict[str, Any] | None = None
) -> LoadedSettings:
    """Read every layer and validate. Raises SettingsError for anything wrong."""
    if config_path is not None:
        path, origin, explicit = Path(config_path).expanduser(), "flag --config", True
    elif os.environ.get(CONFIG_ENV):
        path, origin, explicit = (
            Path(os.environ[CONFIG_ENV]).expanduser(),
            f"env {CONFIG_ENV}",
            True,
        )
    else:
        path, origin, explicit = default_config_path(), "default", False

    file_layer: dict[str, Any] = {}
    if path.is_file():
        try:
            file_layer = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(
                f"settings file {path} ({origin}) is not valid TOML: {exc}; fix or remove it"
            ) from None
    elif explicit:
        raise SettingsError(
            f"settings file {path} ({origin}) does not exist; create it or point "
            f"--config/{CONFIG_ENV} at an existing TOML file"
        )
    file_layer = _normalise_layer(file_layer)

    try:
        env_layer = _normalise_layer(EnvSettingsSource(Settings)())
    except Exception as exc:  # pydantic-settings' own parse errors (e.g. bad JSON for a group)
        raise SettingsError(f"environment: {exc}") from None

    flag_layer = _normalise_layer({k: v for k, v in (flags or {}).items() if v is not None})

    origins: dict[str, str] = {}
    for key in _leaves(file_layer):
        origins[key] = str(path)
    for key in _leaves(env_layer):
        origins[key] = f"env {_env_var_for(key)}"
    for key in _leaves(flag_layer):
        origins[key] = f"flag --{key.replace('_', '-')}"

    merged = _deep_merge(_deep_merge(file_layer, env_layer), flag_layer)
    try:
        # model_validate, not Settings(...): the layers were read above, so no source is re-read.
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, merged, origins)) from None
    return LoadedSettings(settings, origins, path, origin, path.is_file(), merged)


def _describe(exc: ValidationError, merged: dict[str, Any], origins: dict[str, str]) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        origin = origins.get(key)
        if origin is None:  # an error on a group: name the origin of any key below it
            origin = next((o for k, o in origins.items() if k.startswith(key + ".")), "default")
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            lines.append(
                f"unknown setting '{key}' (from {origin}); see `astrobio config show` "
                "for the known settings"
            )
            continue
        shown = "***" if "api_key" in key else repr(value)
        lines.append(f"setting '{key}' = {shown} (from {origin}) is invalid: {err['msg']}")
    return "; ".join(lines)


# -- the process-wide settings, configured by the root command's flags -------------------------


def configure(config_path: Path | str | None = None, flags: dict[str, Any] | None = None) -> None:
    """Set the command-line layer; settings are (re)read on next use."""
    _state.configure(config_path, flags)


def loaded() -> LoadedSettings:
    if _state.loaded is None:
        _state.loaded = load_settings(_state.config_path, _state.flags)
    return _state.loaded


def get_settings() -> Settings:
    """The effective settings of this process."""
    return loaded().settings


def effective(ls: LoadedSettings) -> list[dict[str, Any]]:
    """Rows of (key, value, source) for `astrobio config show`; secrets masked."""
    dumped = ls.settings.model_dump(mode="python")
    rows = []
    for key, value in sorted(_leaves(dumped).items()):
        if isinstance(value, SecretStr):
            value = "**********" if value.get_secret_value() else ""
        elif isinstance(value, Path):
            value = str(value)
        rows.append({"key": key, "value": value, "source": ls.origins.get(key, "default")})
    return rows
