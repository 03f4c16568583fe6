"""Plugin discovery through Python entry points, loaded lazily and checked against their contract.

Built-in plugins register exactly like third-party ones (``[project.entry-points."probekit.selectors"]`` in a
pyproject), so one table holds both. A plugin whose import fails is reported, not fatal; two plugins with the same
name in one group are refused, naming both packages; an unknown name gets the known ones and a "did you mean".

When a plugin loads, its class is checked against its contract before any of its code runs in a sweep: the methods
the core calls must accept the core's arguments (as pluggy checks hook implementations), and its ``api_version``
(the version of ``probekit.api`` it was written for, a class attribute; absent means the current one) must be one
this probekit supports. A deprecated version still loads, with a warning.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint, distributions

from pydantic import BaseModel

from probekit.contracts import API_VERSION, DatasetPlugin, Executor, ModelAdapter, Plugin, Selector, plugin_summary
from probekit.errors import PluginError

#: spec section / CLI name -> (entry-point group, base class every plugin of the group subclasses)
GROUPS: dict[str, tuple[str, type[Plugin]]] = {
    "models": ("probekit.models", ModelAdapter),
    "datasets": ("probekit.datasets", DatasetPlugin),
    "selectors": ("probekit.selectors", Selector),
    "executors": ("probekit.executors", Executor),
}

#: the methods the core calls on a plugin of each group, checked against the contract's signature when the plugin
#: loads. The core passes every argument positionally, so parameter names may differ from the contract's:
#: ``build(tokenizer)`` in sweep.Sweep._dataset and cli.datasets_preview, ``select(X_train, y_train, ks)`` in
#: sweep.probe_cells, ``ks_problem(ks, n_columns)`` in spec._ks_problem, ``activations(batch, layers, sites)`` in
#: extraction.iter_activation_batches. A model's ``identity``, ``tokenizer``, ``n_layers`` and ``d_mlp`` are
#: properties or attributes set by its constructor: they cannot be checked before it is instantiated.
CALLED_METHODS: dict[str, tuple[str, ...]] = {
    "models": ("activations",),
    "datasets": ("build",),
    "selectors": ("select", "ks_problem"),
    "executors": ("run", "check"),
}

#: ``api_version`` values this probekit loads, ``API_VERSION`` (the newest) among them
SUPPORTED_API_VERSIONS = frozenset({1})
#: supported versions that will stop being supported, with what their plugins should change (a warning at load)
DEPRECATED_API_VERSIONS: dict[int, str] = {}

log = logging.getLogger("probekit.registry")


@dataclass(frozen=True)
class PluginEntry:
    """One registered plugin, before it is imported."""

    group: str
    name: str
    package: str
    target: str


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be used, with the reason."""

    entry: PluginEntry
    error: str


class PluginRegistry:
    """Every plugin registered in the current Python environment, by group and name."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, list[tuple[PluginEntry, EntryPoint]]]] = {g: {} for g in GROUPS}
        groups = {entry_point_group: group for group, (entry_point_group, _) in GROUPS.items()}
        seen_packages: set[str] = set()
        # iterate distributions, not entry_points(): the latter silently keeps one of two same-named plugins
        for distribution in distributions():
            package = distribution.metadata["Name"] or "<unknown package>"
            normalized = package.lower().replace("_", "-")
            if normalized in seen_packages:  # an older copy further down sys.path is shadowed, as for imports
                continue
            seen_packages.add(normalized)
            for entry_point in distribution.entry_points:
                if entry_point.group in groups:
                    group = groups[entry_point.group]
                    entry = PluginEntry(group, entry_point.name, package, entry_point.value)
                    self._entries[group].setdefault(entry_point.name, []).append((entry, entry_point))
        self._loaded: dict[tuple[str, str], type[Plugin]] = {}

    def names(self, group: str) -> list[str]:
        """Sorted names registered in ``group`` (including broken or duplicated ones)."""
        return sorted(self._entries[_check_group(group)])

    def entries(self, group: str) -> list[PluginEntry]:
        """Every registration in ``group``, duplicates included, sorted by name."""
        return [entry for name in self.names(group) for entry, _ in self._entries[group][name]]

    def get(self, group: str, name: str) -> type[Plugin]:
        """Import and return the plugin class, or raise :class:`PluginError` saying why it cannot be used."""
        group = _check_group(group)
        if (group, name) in self._loaded:
            return self._loaded[(group, name)]
        candidates = self._entries[group].get(name)
        if not candidates:
            raise PluginError(unknown_name_message(group, name, self.names(group)))
        if len(candidates) > 1:
            packages = " and ".join(f"'{entry.package}' ({entry.target})" for entry, _ in candidates)
            raise PluginError(
                f"{group} plugin '{name}' is registered twice, by {packages}; uninstall one of the packages"
            )
        entry, entry_point = candidates[0]
        try:
            loaded = entry_point.load()
        except Exception as error:  # a third-party import can fail in any way; report it, never crash
            raise PluginError(
                f"{group} plugin '{name}' from package '{entry.package}' failed to import "
                f"({entry.target}): {type(error).__name__}: {error}"
            ) from error
        problem = contract_violation(group, loaded)
        if problem:
            raise PluginError(f"{group} plugin '{name}' from package '{entry.package}' {problem}")
        declared = getattr(loaded, "api_version", None)
        if declared in DEPRECATED_API_VERSIONS:
            log.warning("%s plugin '%s' from package '%s' declares api_version %s, which is deprecated: %s", group,
                        name, entry.package, declared, DEPRECATED_API_VERSIONS[declared])
        self._loaded[(group, name)] = loaded
        return loaded

    def survey(self, group: str) -> tuple[list[tuple[PluginEntry, type[Plugin]]], list[BrokenPlugin]]:
        """Load every plugin of ``group``: the usable ones and the broken ones with their errors."""
        usable, broken = [], []
        for name in self.names(group):
            try:
                cls = self.get(group, name)
            except PluginError as error:
                for entry, _ in self._entries[group][name]:
                    broken.append(BrokenPlugin(entry, str(error)))
                continue
            usable.append((self._entries[group][name][0][0], cls))
        return usable, broken


def _check_group(group: str) -> str:
    if group not in GROUPS:
        raise PluginError(unknown_name_message("plugin group", group, sorted(GROUPS)))
    return group


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """'unknown X' message listing the known names, with a close match first when there is one."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(known) if known else "none installed"
    return f"unknown {kind} '{name}'.{hint} Known: {listing}."


def contract_violation(group: str, obj: object) -> str | None:
    """Why ``obj`` is not a valid plugin for ``group``, or None when it is."""
    base = GROUPS[group][1]
    if not isinstance(obj, type) or not issubclass(obj, base):
        return f"is not a subclass of probekit.contracts.{base.__name__} (got {obj!r})"
    version_problem = api_version_problem(obj)  # first: another API version has other rules
    if version_problem:
        return version_problem
    params = getattr(obj, "Params", None)
    if not isinstance(params, type) or not issubclass(params, BaseModel):
        return "has no pydantic 'Params' model"
    if params.model_config.get("extra") != "forbid":
        return "has a 'Params' model that accepts unknown keys; derive it from probekit.contracts.PluginParams"
    if not plugin_summary(obj):
        return "has no docstring (its first line is the summary shown by list-plugins)"
    abstract: frozenset[str] = getattr(obj, "__abstractmethods__", frozenset())
    if abstract:
        return f"does not implement {', '.join(sorted(abstract))}"
    for method in CALLED_METHODS[group]:
        problem = signature_mismatch(obj, base, method)
        if problem:
            return problem
    return None


def api_version_problem(cls: type) -> str | None:
    """Why this probekit cannot load a plugin written for ``cls.api_version``, or None when it can (a plugin that
    declares none is taken to be written for the current version)."""
    declared = getattr(cls, "api_version", API_VERSION)
    if not isinstance(declared, int) or isinstance(declared, bool):
        return f"declares api_version = {declared!r}; it must be an integer, e.g. {API_VERSION}"
    if declared > API_VERSION:
        return (f"is written for plugin API version {declared}, but this probekit offers version {API_VERSION}; "
                "upgrade probekit (pip install --upgrade probekit) to use it")
    loadable = SUPPORTED_API_VERSIONS | DEPRECATED_API_VERSIONS.keys()  # deprecated: still supported, for now
    if declared not in loadable:
        supported = ", ".join(map(str, sorted(loadable)))
        return (f"is written for plugin API version {declared}, which this probekit no longer supports (it supports "
                f"{supported}); upgrade the plugin's package")
    return None


def signature_mismatch(cls: type, base: type, method: str) -> str | None:
    """Why ``cls.method`` cannot be called the way the core calls ``base.method`` (the contract's positional
    arguments), or None when it can: it must take as many positional arguments (or ``*args``) and must not require
    any other argument."""
    implementation = getattr(cls, method, None)
    contract = getattr(base, method)
    if implementation is contract:
        return None  # inherited unchanged
    if not callable(implementation):
        return f"has {method} = {implementation!r}, not a method; the contract calls {_show(method, contract)}"
    try:
        parameters = list(inspect.signature(implementation).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable without a signature: nothing to check
        return None
    if isinstance(inspect.getattr_static(cls, method), (staticmethod, classmethod)):
        takes = parameters  # nothing bound to the instance
    else:
        takes = parameters[1:] if parameters and parameters[0].kind in _POSITIONAL else parameters  # self
    wanted = len(list(inspect.signature(contract).parameters)) - 1  # without self
    positional = [p for p in takes if p.kind in _POSITIONAL]
    accepts = len(positional) >= wanted or any(p.kind is p.VAR_POSITIONAL for p in takes)
    required_extra = [p for p in positional[wanted:] if p.default is p.empty] + [
        p for p in takes if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if accepts and not required_extra:
        return None
    return f"has {_show(method, implementation)} but the contract calls {_show(method, contract)}"


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _show(method: str, function: object) -> str:
    """``select(self, X_train, y_train, ks)``: a signature without annotations."""
    signature = inspect.signature(function)  # type: ignore[arg-type]
    bare = signature.replace(parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
                             return_annotation=signature.empty)
    return f"{method}{bare}"
