"""The plugin host: finds plugins through the `astrobio` entry-point group and owns the policy.

Policy, in one place:
- a plugin whose import or hook raises is quarantined (listed as broken with its error);
  everything else keeps working;
- two plugins registering the same name of the same kind: the name is listed as broken and any
  use of it is an error naming both distributions;
- `ASTROBIO_DISABLE_PLUGINS=a,b` blocks plugins (entry-point names) or registered names;
  `ASTROBIO_LOAD_PLUGINS=a,b` loads only those;
- an unknown name gets "unknown model 'cube-unt'; did you mean 'cube-unet'?" from `get`.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from astrobio_cli import hookspecs
from astrobio_cli.errors import PluginConflictError, UnknownNameError
from astrobio_cli.specs import KINDS, SPEC_TYPES, Spec

ENTRY_POINT_GROUP = "astrobio"
DISABLE_ENV = "ASTROBIO_DISABLE_PLUGINS"
ALLOW_ENV = "ASTROBIO_LOAD_PLUGINS"

HOOK_FOR_KIND = {
    "model": "register_models",
    "data-source": "register_data_sources",
    "attention": "register_attention_backends",
}
KIND_LABEL = {"model": "model", "data-source": "data source", "attention": "attention backend"}


@dataclass(frozen=True)
class PluginInfo:
    """One plugin module: its entry-point name and the distribution that provides it."""

    name: str
    module: str
    dist: str
    version: str


@dataclass
class Entry:
    """One registered spec, with the plugin that registered it."""

    spec: Spec
    plugin: PluginInfo

    @property
    def kind(self) -> str:
        return self.spec.kind


@dataclass
class Broken:
    """A plugin (or one of its hooks) that raised."""

    plugin: PluginInfo
    error: str
    kind: str | None = None


@dataclass
class Status:
    state: str  # "available" | "unavailable" | "broken"
    reason: str = ""


def _names_from_env(var: str) -> frozenset[str] | None:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return None
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def _format_error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


@dataclass
class PluginHost:
    """Collects specs from plugins. Build one with :func:`load_host` (or directly in tests)."""

    disable: frozenset[str] = field(default_factory=frozenset)
    allow: frozenset[str] | None = None
    pm: pluggy.PluginManager = field(init=False)
    plugins: list[PluginInfo] = field(default_factory=list, init=False)
    broken: list[Broken] = field(default_factory=list, init=False)
    entries: dict[str, dict[str, Entry]] = field(init=False)
    conflicts: dict[tuple[str, str], list[Entry]] = field(default_factory=dict, init=False)
    disabled: set[tuple[str, str]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.entries = {kind: {} for kind in KINDS}

    # -- loading -----------------------------------------------------------------------------

    def load_entry_points(self, eps: Iterable[Any] | None = None) -> None:
        """Import and register every plugin in the `astrobio` entry-point group."""
        if eps is None:
            eps = cached_entry_points()
        # A name in the allow-list that is no entry point may be a registered name: then every
        # plugin has to be imported to find it, and specs are filtered one by one.
        ep_list = sorted(eps, key=lambda ep: ep.name)
        ep_names = {ep.name for ep in ep_list}
        allow_specs = self.allow is not None and bool(self.allow - ep_names)
        for ep in ep_list:
            if ep.name in self.disable:
                continue
            if self.allow is not None and ep.name not in self.allow and not allow_specs:
                continue
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                dist=dist.name if dist is not None else "?",
                version=dist.version if dist is not None else "?",
            )
            try:
                module = ep.load()
            except Exception as exc:  # quarantine: any import error, whatever the plugin did
                self.plugins.append(info)
                self.broken.append(Broken(info, _format_error(exc)))
                continue
            self.add_plugin(module, info)

    def add_plugin(self, module: ModuleType | object, info: PluginInfo) -> None:
        """Register one plugin object (a module, usually) and collect its specs."""
        if info not in self.plugins:
            self.plugins.append(info)
        try:
            self.pm.register(module, name=info.name)
        except Exception as exc:  # e.g. a hookimpl whose signature does not match the spec
            self.broken.append(Broken(info, _format_error(exc)))
            return
        for kind, hook_name in HOOK_FOR_KIND.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin is not module:
                    continue
                collected: list[Spec] = []
                register = functools.partial(self._collect, kind, collected)
                try:
                    impl.function(register=register)
                except Exception as exc:
                    self.broken.append(Broken(info, _format_error(exc), kind))
                    continue
                for spec in collected:
                    self._admit(Entry(spec, info))

    def add_module(self, name: str, module: ModuleType | object, dist: str = "(local)") -> None:
        """Register a plugin object that is not installed (tests, notebooks)."""
        self.add_plugin(module, PluginInfo(name=name, module=name, dist=dist, version="-"))

    def add_module_path(self, name: str, dotted: str, dist: str = "(local)") -> None:
        """Import `dotted` and register it; an import error quarantines it like an entry point."""
        info = PluginInfo(name=name, module=dotted, dist=dist, version="-")
        try:
            module = importlib.import_module(dotted)
        except Exception as exc:
            self.plugins.append(info)
            self.broken.append(Broken(info, _format_error(exc)))
            return
        self.add_plugin(module, info)

    @staticmethod
    def _collect(kind: str, out: list[Spec], spec: Any) -> None:
        expected = SPEC_TYPES[kind]
        if not isinstance(spec, expected):
            raise TypeError(
                f"register() for {KIND_LABEL[kind]}s takes a {expected.__name__}, "
                f"got {type(spec).__name__}"
            )
        out.append(spec)

    def _admit(self, entry: Entry) -> None:
        kind, name = entry.kind, entry.spec.name
        if name in self.disable:
            self.disabled.add((kind, name))
            return
        if (
            self.allow is not None
            and name not in self.allow
            and entry.plugin.name not in self.allow
        ):
            self.disabled.add((kind, name))
            return
        if (kind, name) in self.conflicts:
            self.conflicts[(kind, name)].append(entry)
            return
        existing = self.entries[kind].pop(name, None)
        if existing is not None:
            self.conflicts[(kind, name)] = [existing, entry]
            return
        self.entries[kind][name] = entry

    # -- queries -----------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted(set(self.entries[kind]) | {n for k, n in self.conflicts if k == kind})

    def specs(self, kind: str) -> list[Spec]:
        return [self.entries[kind][n].spec for n in sorted(self.entries[kind])]

    def entry(self, kind: str, name: str) -> Entry:
        """The entry for `name`, or a usage error that says what to do."""
        label = KIND_LABEL[kind]
        if (kind, name) in self.conflicts:
            raise PluginConflictError(conflict_message(kind, name, self.conflicts[(kind, name)]))
        if name in self.entries[kind]:
            return self.entries[kind][name]
        if (kind, name) in self.disabled:
            raise UnknownNameError(
                f"{label} '{name}' is disabled by {DISABLE_ENV} or {ALLOW_ENV}; "
                "unset the variable to use it"
            )
        known = self.names(kind)
        raise UnknownNameError(unknown_message(label, name, known))

    def get(self, kind: str, name: str) -> Spec:
        return self.entry(kind, name).spec

    def status(self, spec: Spec) -> Status:
        return _status(spec)

    def rows(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every plugin contribution with its status, as plain data for `plugins list`."""
        rows: list[dict[str, Any]] = []
        kinds = [kind] if kind else list(KINDS)
        for k in kinds:
            for name in sorted(self.entries[k]):
                e = self.entries[k][name]
                st = _status(e.spec)
                rows.append(_row(k, name, e.spec.description, e.plugin, st))
                rows[-1].update(self._data_links(e.spec))
            for (ck, name), clashing in sorted(self.conflicts.items()):
                if ck != k:
                    continue
                msg = conflict_message(ck, name, clashing)
                for e in clashing:
                    rows.append(_row(ck, name, e.spec.description, e.plugin, Status("broken", msg)))
        for b in self.broken:
            if kind is not None and b.kind not in (None, kind):
                continue
            rows.append(_row(b.kind or "?", b.plugin.name, "", b.plugin, Status("broken", b.error)))
        return rows

    def _data_links(self, spec: Spec) -> dict[str, Any]:
        """What data a model reads and which sources write it; what a source writes and which
        models read it (`astrobio_cli.data.kinds`)."""
        from astrobio_cli.data import kinds

        if spec.kind == "model":
            return {"data_kinds": list(spec.data_kinds), "fed_by": kinds.feeders(self, spec)}
        if spec.kind == "data-source":
            produced = list(getattr(spec, "produces", ()))
            feeds = sorted({m for k in produced for m in kinds.consumers(self, k)})
            return {"produces": produced, "feeds": feeds}
        return {}

    def counts(self) -> dict[str, int]:
        out = {"available": 0, "unavailable": 0, "broken": 0}
        for row in self.rows():
            out[row["status"]] += 1
        return out

    def add_commands(self, app: Any, on_error: Callable[[PluginInfo, str], None]) -> None:
        """Let every plugin add commands to `app`; a plugin that raises is reported, not fatal."""
        infos = {p.name: p for p in self.plugins}
        for impl in self.pm.hook.register_commands.get_hookimpls():
            name = self.pm.get_name(impl.plugin) or "?"
            try:
                impl.function(app=app)
            except Exception as exc:
                info = infos.get(name, PluginInfo(name, "?", "?", "?"))
                self.broken.append(Broken(info, _format_error(exc)))
                on_error(info, _format_error(exc))


def _row(kind: str, name: str, desc: str, plugin: PluginInfo, st: Status) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "description": desc,
        "plugin": plugin.name,
        "distribution": plugin.dist,
        "version": plugin.version,
        "status": st.state,
        "reason": st.reason,
    }


_STATUS_CACHE: dict[int, tuple[Spec, Status]] = {}


def _status(spec: Spec) -> Status:
    """Run the spec's availability check once per process (checks may probe hardware)."""
    hit = _STATUS_CACHE.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    try:
        ok, reason = spec.check()
        st = Status("available", "") if ok else Status("unavailable", str(reason))
    except Exception as exc:
        st = Status("broken", f"availability check raised {_format_error(exc)}")
    _STATUS_CACHE[id(spec)] = (spec, st)
    return st


def conflict_message(kind: str, name: str, clashing: list[Entry]) -> str:
    who = " and ".join(f"'{e.plugin.dist}' (plugin '{e.plugin.name}')" for e in clashing)
    return (
        f"{KIND_LABEL[kind]} '{name}' is registered by both {who}; "
        f"uninstall one or disable one with {DISABLE_ENV}"
    )


def unknown_message(label: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else "."
    listing = ", ".join(known) if known else "none are installed"
    return f"unknown {label} '{name}'{hint} Known {label}s: {listing}"


@dataclass(frozen=True)
class _Dist:
    name: str
    version: str


@dataclass(frozen=True)
class CachedEntryPoint:
    """An entry point as the registry cache remembers it: loads like importlib's."""

    name: str
    value: str
    dist: _Dist | None

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        obj = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def _registry_key() -> str:
    """Changes whenever a distribution is installed or removed: the sys.path directories and
    their modification times (installing or removing a package adds or deletes a dist-info
    directory in one of them), and the interpreter. (zlib, not hashlib: hashlib's import costs
    more than the whole lookup.)"""
    import zlib

    parts = [sys.executable]
    for entry in sys.path:
        if not entry:  # the working directory (python -c / -m): no distributions there
            continue
        try:
            parts.append(f"{entry}:{os.stat(entry).st_mtime_ns}")
        except OSError:
            continue
    text = "|".join(parts).encode()
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"


def _user_cache_dir() -> Path:
    """platformdirs' user cache directory, without importing platformdirs (startup time)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~/AppData/Local")
        return Path(base) / "astrobio" / "Cache"
    if sys.platform == "darwin":
        return Path(os.path.expanduser("~/Library/Caches/astrobio"))
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "astrobio"


def _registry_path() -> Path | None:
    if os.environ.get("ASTROBIO_NO_REGISTRY_CACHE") == "1":
        return None
    root = os.environ.get("ASTROBIO_REGISTRY_CACHE") or _user_cache_dir()
    return Path(root) / f"registry-{_registry_key()}.json"


def cached_entry_points() -> list[Any]:
    """The `astrobio` entry points, from a small cache keyed on the installed distributions.

    Scanning every installed distribution's metadata costs ~50 ms of each `astrobio` start; the
    cache turns it into a few stat calls. Any change to sys.path's directories (an install, an
    uninstall, an upgrade) makes a new key; ASTROBIO_NO_REGISTRY_CACHE=1 bypasses it.
    """
    import json

    path = _registry_path()
    if path is not None:
        try:
            rows = json.loads(path.read_text())
            return [
                CachedEntryPoint(r["name"], r["value"], _Dist(r["dist"], r["version"]))
                for r in rows
            ]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # absent or unreadable: rebuild it below
    from importlib.metadata import entry_points

    eps = list(entry_points(group=ENTRY_POINT_GROUP))
    if path is not None:
        rows = [
            {
                "name": ep.name,
                "value": ep.value,
                "dist": ep.dist.name if ep.dist is not None else "?",
                "version": ep.dist.version if ep.dist is not None else "?",
            }
            for ep in eps
        ]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(rows))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache directory only costs the scan next time
    return eps


def load_host() -> PluginHost:
    """A host with every installed plugin, honouring the environment's allow and block lists."""
    host = PluginHost(
        disable=_names_from_env(DISABLE_ENV) or frozenset(), allow=_names_from_env(ALLOW_ENV)
    )
    host.load_entry_points()
    return host


@functools.lru_cache(maxsize=1)
def get_host() -> PluginHost:
    """The process-wide host, loaded on first use."""
    return load_host()


_ACTIVE: PluginHost | None = None


def set_active_host(host: PluginHost | None) -> None:
    """Make `host` the one that library code (attention routing, smoke) consults; None goes back
    to the process-wide host. `build_app(host=...)` calls this, so an app built with a toy host
    (tests, notebooks) routes attention through that host's backends."""
    global _ACTIVE
    _ACTIVE = host


def active_host() -> PluginHost:
    """The host set by `set_active_host`, else the process-wide one."""
    return _ACTIVE if _ACTIVE is not None else get_host()


def resolve(kind: str, name: str) -> Spec:
    """Shorthand for commands: the spec for `name` or a usage error."""
    return get_host().get(kind, name)
