"""Plugin discovery (entry-point group ``floe.computes``) and :func:`create_plugin`."""

from __future__ import annotations

import os
import threading
from importlib.metadata import EntryPoint, PackageNotFoundError, distribution, entry_points
from typing import TYPE_CHECKING, Any, overload

from floe_compute.config import ComputeConfig, parse_url
from floe_compute.errors import ConfigError, PluginNotFoundError
from floe_compute.hints import install_hint, nearest
from floe_compute.manifest import load_manifest, merge_overrides
from floe_compute.plugin import ComputePlugin

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from floe_compute.overrides import ComputeOverrides

__all__ = ["DEFAULT_URL", "ENTRY_POINT_GROUP", "create_plugin", "get_plugin_class", "list_plugins"]

ENTRY_POINT_GROUP = "floe.computes"
DISTRIBUTION = "floe-compute"
DEFAULT_URL = "duckdb:///:memory:"
FILE_SUFFIXES = (".duckdb", ".db")
"""A path with one of these suffixes (or a ``pathlib.Path``) opens a file of the default engine,
as ``duckdb.connect(path)`` and ``ibis.connect("x.duckdb")`` do."""

_lock = threading.Lock()
_classes: dict[str, type[ComputePlugin]] = {}
_broken: dict[str, str] = {}


def _own_entry_points() -> dict[str, EntryPoint]:
    """The library's own engines, read from its installed metadata: one small file, where finding
    every plugin reads the metadata of every installed distribution (tens of ms at each start)."""
    try:
        own = distribution(DISTRIBUTION).entry_points
    except PackageNotFoundError:  # run from a source tree that is not installed
        return {}
    return {ep.name: ep for ep in own.select(group=ENTRY_POINT_GROUP)}


def _entry_points() -> dict[str, EntryPoint]:
    """Every installed plugin's entry point, by name (a URL backend such as ``postgresql``).

    A name the library's own engines use means its own engine, whatever else claims it (which of
    two distributions claiming one name came last would otherwise depend on directory order).
    """
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return found | _own_entry_points()


def _entry_point(name: str) -> EntryPoint | None:
    """The entry point of one name; the library's own engines are found without the full scan."""
    return _own_entry_points().get(name) or _entry_points().get(name)


def _load(name: str, ep: EntryPoint) -> type[ComputePlugin] | None:
    """Import one plugin (and so its driver) on first use; a failure is reported, not fatal."""
    with _lock:
        if name in _classes:
            return _classes[name]
        if name in _broken:
            return None
        try:
            cls = ep.load()
        except Exception as exc:  # a missing optional driver must not hide other plugins
            _broken[name] = install_hint(exc, name) or f"failed to load: {type(exc).__name__}: {exc}"
            return None
        if not (isinstance(cls, type) and issubclass(cls, ComputePlugin)):
            _broken[name] = f"{ep.value} is not a ComputePlugin subclass"
            return None
        _classes[name] = cls
        return cls


def _discover() -> dict[str, type[ComputePlugin]]:
    """Load every installed plugin (for listing them; ``create_plugin`` loads only its own)."""
    found = {}
    for name, ep in _entry_points().items():
        cls = _load(name, ep)
        if cls is not None and name not in cls.schemes[1:]:  # an alias (postgres) is not listed
            found[name] = cls
    return found


def list_plugins() -> list[str]:
    """Names of the installed plugins that can be used."""
    return sorted(_discover())


def get_plugin_class(scheme_or_name: str) -> type[ComputePlugin]:
    """The plugin that claims a URL backend (``postgresql`` for ``postgresql+psycopg``) or name.

    Entry points are named after the backends their plugins claim: only the one named is
    imported, and an unknown name imports nothing (a typo must not pay for every driver).
    """
    point = _entry_point(scheme_or_name)
    if point is not None:
        cls = _load(scheme_or_name, point)
        if cls is not None:
            return cls
    installed = sorted(name for name in _entry_points() if name not in _broken)
    if scheme_or_name in _broken:  # installed, but its driver is missing: say how to install it
        raise PluginNotFoundError(
            f"no usable compute plugin for {scheme_or_name!r}: {_broken[scheme_or_name]}",
            available=installed,
        )
    close = nearest(scheme_or_name, installed)
    suggestion = f" (did you mean {close}://?)" if close else ""
    raise PluginNotFoundError(
        f"no compute plugin for {scheme_or_name!r}{suggestion}; installed: "
        + (", ".join(f"{name}://" for name in installed) or "none"),
        available=installed,
    )


def _build(cls: type[ComputePlugin], fields: dict[str, Any]) -> ComputePlugin:
    return cls(cls.config_class.model_validate(_canonical_scheme(cls, fields)))


def _canonical_scheme(cls: type[ComputePlugin], fields: dict[str, Any]) -> dict[str, Any]:
    """An alias scheme (``postgres://``, after ``schemes[0]``) rewritten to the engine's own."""
    try:
        url = parse_url(fields.get("url"))
    except ValueError:
        return fields  # the config's validation reports it
    backend, plus, driver = url.drivername.partition("+")
    if backend == cls.schemes[0] or backend not in cls.schemes:
        return fields
    return {**fields, "url": url.set(drivername=cls.schemes[0] + plus + driver)}


def _path_url(path: str | os.PathLike[str]) -> str | None:
    """The default engine's URL for a database file, or None for a text that is not a path."""
    text = os.fspath(path)
    if not isinstance(path, os.PathLike) and ("://" in text or not text.lower().endswith(FILE_SUFFIXES)):
        return None
    return f"{DEFAULT_URL.split(':', 1)[0]}:///{text}"


Target = str | os.PathLike[str] | ComputeConfig | None


@overload
def create_plugin(
    url_or_target: Target = None,
    *,
    manifest: str | os.PathLike[str] | None = None,
    **overrides: Unpack[ComputeOverrides],
) -> ComputePlugin: ...


@overload
def create_plugin(  # an engine's own fields (DuckDB's extensions, Snowflake's warehouse)
    url_or_target: Target = None,
    *,
    manifest: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> ComputePlugin: ...


def create_plugin(
    url_or_target: Target = None,
    *,
    manifest: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> ComputePlugin:
    """A plugin for a URL, a config, or a manifest target; keyword overrides win over all three.

    With nothing given, the embedded default: DuckDB in memory; a ``pathlib.Path`` or a path
    ending in ``.duckdb`` or ``.db``: that DuckDB file. The plugin is not connected yet: use it as
    a context manager or call ``connect()``.
    """
    if manifest is None and isinstance(url_or_target, str | os.PathLike):
        url_or_target = _path_url(url_or_target) or os.fspath(url_or_target)
    if isinstance(url_or_target, ComputeConfig):
        cls = _class_for_config(url_or_target)
        fields = merge_overrides(url_or_target.model_dump(exclude_unset=True), overrides)
        return _build(cls, fields)
    if url_or_target is not None and not isinstance(url_or_target, str):
        raise ConfigError(
            f"expected a URL, a target name or a ComputeConfig, got a {type(url_or_target).__name__}"
        )
    if manifest is not None:
        fields = merge_overrides(load_manifest(manifest, url_or_target), overrides)
        try:
            return _build(_class_for_url(fields.get("url")), fields)
        except ConfigError as exc:  # say which file and target the bad value came from
            where = f"manifest {manifest}: target {fields.get('name')!r}"
            if isinstance(exc, PluginNotFoundError):
                raise PluginNotFoundError(f"{where}: {exc}", available=exc.available) from None
            raise ConfigError(f"{where}: {exc}") from None
    elif url_or_target is None:
        fields = merge_overrides({"url": DEFAULT_URL}, overrides)
    elif "://" in url_or_target or _claimed_scheme(url_or_target):
        fields = merge_overrides({"url": url_or_target}, overrides)
    else:
        raise ConfigError(
            f"{url_or_target!r} is neither a URL (scheme://...) nor usable as a target name "
            "without manifest=...; e.g. create_plugin('duckdb:///:memory:') or "
            f"create_plugin({url_or_target!r}, manifest='floe.yaml')"
        )
    return _build(_class_for_url(fields.get("url")), fields)


def _class_for_url(url: Any) -> type[ComputePlugin]:
    if url is None:
        raise ConfigError("url: missing; every target needs a url such as 'duckdb:///:memory:'")
    try:
        parsed = parse_url(url)
    except ValueError as exc:
        raise ConfigError(f"url: {exc}") from None
    # a plugin may claim a backend+driver of its own (``spark+connect`` beside ``spark``)
    if "+" in parsed.drivername and _entry_point(parsed.drivername) is not None:
        return get_plugin_class(parsed.drivername)
    return get_plugin_class(parsed.get_backend_name())


def _claimed_scheme(text: str) -> bool:
    """``scheme:...`` without slashes, for a scheme some plugin claims."""
    scheme = text.split(":", 1)[0].split("+")[0] if ":" in text else ""
    return bool(scheme) and (
        _entry_point(scheme) is not None or any(scheme in cls.schemes for cls in _discover().values())
    )


def _class_for_config(config: ComputeConfig) -> type[ComputePlugin]:
    cls = get_plugin_class(config.url.get_backend_name())
    if type(config) is cls.config_class:
        return cls
    for other in _discover().values():
        if type(config) is other.config_class:
            return other
    return cls
