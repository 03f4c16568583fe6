"""The run spec: YAML in (safe loading only), validated with pydantic, every plugin's params checked by its own
``Params``, errors naming the file, line and exact spec path, and a stable fingerprint of the normalised content.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from probekit.contracts import Plugin, PluginParams
from probekit.controls import Control
from probekit.errors import PluginError, ProbekitError, SpecError
from probekit.registry import PluginRegistry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginRef(_Strict):
    """One plugin use: its registered name, an optional label (defaults to the name) and its params."""

    plugin: str = Field(description="registered plugin name (see `probekit list-plugins`)")
    label: str | None = Field(None, description="name used in results; needed when one plugin is used twice")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the plugin's own Params")

    @property
    def name(self) -> str:
        return self.label or self.plugin


class ProbeSettings(_Strict):
    """The probe retrained on every selection: logistic regression with balanced class weights."""

    C: float = Field(1.0, gt=0, description="inverse L2 regularisation strength")
    max_iter: int = Field(1000, ge=10, description="solver iteration limit")


class SplitSettings(_Strict):
    """Stratified train/test split of each feature's sites; identical for every layer, selector and k."""

    test_fraction: float = Field(0.3, gt=0, lt=1)
    seed: int = Field(42, description="seed of the split and of the F1 bootstrap intervals")
    by: Literal["group", "site"] = Field(
        "group", description="'group': sites of one source (document, entity, identical text) stay on one side, so "
        "a probe cannot score by recognising its source; 'site': the plain stratified split of probekit <= 0.1 "
        "(reproduces old results, may leak)")


class ExtractionSettings(_Strict):
    """How activations are extracted."""

    batch_tokens: int = Field(4096, ge=1, description="padded tokens per forward pass (e.g. 32 sequences x 128)")


class ExecutorRef(_Strict):
    """Where the sweep's units run (see docs/distributed.md). Changes where and when, never results: it does not
    count in the fingerprint."""

    plugin: str = Field("local", description="executor plugin: local, processes, slurm, ray, ...")
    params: dict[str, Any] = Field(default_factory=dict, description="validated by the executor's own Params")
    pairs_per_unit: int = Field(32, ge=1, description="(feature, layer) pairs per probe unit at most; fewer when "
                                "that keeps every worker busy")
    max_retries: int = Field(1, ge=0, description="times a failed unit is submitted again")


#: layers are checked against the model when it loads; until then no index may exceed this (no model is deeper)
MAX_LAYER = 1023
#: the largest prefilter (no model has more neurons per layer); ks are bounded by the prefilter
MAX_PREFILTER = 1 << 20


def parse_int_list(value: Any, maximum: int, bound: str) -> list[int]:
    """Accept an int, a list of ints and 'a-b' ranges (inclusive), e.g. [0, '2-4'] -> [0, 2, 3, 4].

    A number above ``maximum`` is refused before any range is expanded; ``bound`` names the limit in the message."""
    items = value if isinstance(value, list) else [value]
    numbers: set[int] = set()
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"must be integers, got {item!r}")
        if isinstance(item, int):
            bounds = (item, item)
        elif isinstance(item, str) and item.strip():
            low, sep, high = item.partition("-")
            try:
                bounds = (int(low), int(high)) if sep else (int(low), int(low))
            except ValueError:
                raise ValueError(f"{item!r} is neither an integer nor a range like '1-8'") from None
            if bounds[0] > bounds[1]:
                raise ValueError(f"range {item!r} is empty")
        else:
            raise ValueError(f"must be integers or ranges like '1-8', got {item!r}")
        if bounds[1] > maximum:
            raise ValueError(f"{item!r} goes beyond {bound}")
        numbers.update(range(bounds[0], bounds[1] + 1))
    if not numbers:
        raise ValueError("must not be empty")
    return sorted(numbers)


class RunSpec(_Strict):
    """A whole sweep: every (model, dataset feature, layer, selector, k) cell is probed."""

    name: str = Field("run", description="run name, shown in reports")
    models: list[PluginRef] = Field(min_length=1)
    datasets: list[PluginRef] = Field(min_length=1)
    layers: Literal["all"] | list[int] = Field("all", description="'all', or layer indices and ranges like '0-3'")
    selectors: list[PluginRef] = Field(min_length=1)
    # prefilter before ks: the ks validator bounds ks by it
    prefilter: int = Field(1024, ge=1, le=MAX_PREFILTER,
                           description="neurons kept by mean difference (train split) before selection")
    ks: list[int] = Field(default_factory=lambda: list(range(1, 9)), description="sparsity levels, e.g. '1-8'")
    min_per_class: int = Field(5, ge=2, description="sites of each class a feature needs to be probed")
    on_bad_feature: Literal["skip", "error"] = Field(
        "skip", description="a feature a dataset cannot offer, or with too few sites of a class: skip it with a "
        "warning, or stop the run"
    )
    controls: list[Control] = Field(
        default_factory=list, description="control cells beside every probe: shuffled_labels (the same selector and "
        "probe on permuted training labels), random_neurons (k random neurons of the whole layer); they add "
        "selectivity columns and do not count in the fingerprint (add them to a finished run)")
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    executor: ExecutorRef = Field(default_factory=ExecutorRef)
    output: Path = Field(Path("runs/run"), description="run directory (relative to the working directory)")
    cache: Path | None = Field(
        Path(".probekit-cache"), description="activation cache directory, shared by runs; null keeps none"
    )

    @field_validator("controls")
    @classmethod
    def _distinct_controls(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"each control once, got {value}")
        return value

    @field_validator("layers", mode="before")
    @classmethod
    def _parse_layers(cls, value: Any) -> Any:
        if value == "all":
            return value
        layers = parse_int_list(value, MAX_LAYER, f"layer {MAX_LAYER} (no model has more layers)")
        if layers[0] < 0:
            raise ValueError("layer indices must be >= 0")
        return layers

    @field_validator("ks", mode="before")
    @classmethod
    def _parse_ks(cls, value: Any, info: ValidationInfo) -> list[int]:
        if "prefilter" in info.data:
            prefilter = info.data["prefilter"]
            ks = parse_int_list(value, prefilter, f"prefilter ({prefilter}): no k can exceed the neurons kept; raise "
                                "prefilter or lower ks")
        else:  # prefilter itself is invalid (and reported)
            ks = parse_int_list(value, MAX_PREFILTER, f"the largest prefilter ({MAX_PREFILTER})")
        if ks[0] < 1:
            raise ValueError("every k must be >= 1")
        return ks

    @property
    def fingerprint(self) -> str:
        """Hash of what determines the results: the normalised spec with defaults filled in, without the name,
        the output and cache directories, the extraction batch size and the executor (where, when, how fast), and
        the controls (cells of their own, which change no probe's row)."""
        content = self.model_dump(mode="json", exclude={"name", "output", "cache", "extraction", "executor",
                                                         "controls"})
        for group in ("models", "datasets", "selectors"):
            for ref in content[group]:
                ref["label"] = ref["label"] or ref["plugin"]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResolvedPlugin:
    """A plugin use with its class loaded and its params validated."""

    label: str
    name: str
    cls: type[Plugin]
    params: PluginParams

    def instantiate(self) -> Any:
        return self.cls(self.params)


@dataclass(frozen=True)
class ValidatedSpec:
    """A run spec whose every plugin exists and whose every plugin section validated."""

    spec: RunSpec
    source: str
    models: list[ResolvedPlugin]
    datasets: list[ResolvedPlugin]
    selectors: list[ResolvedPlugin]
    executor: ResolvedPlugin


def load_spec(path: Path | str, registry: PluginRegistry, output: Path | None = None,
              executor: str | None = None) -> ValidatedSpec:
    """Read, validate and resolve a YAML run spec; raise :class:`SpecError` listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(source, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(source, [f"cannot read file: {error}"]) from None
    return validate_spec_text(text, source, registry, output, base_dir=path.resolve().parent, executor=executor)


def validate_spec_text(
    text: str, source: str, registry: PluginRegistry, output: Path | None = None, base_dir: Path | None = None,
    executor: str | None = None,
) -> ValidatedSpec:
    """Validate spec YAML ``text``; ``source`` names it in messages; ``output`` overrides the spec's output and
    ``executor`` its executor plugin (with that plugin's default params unless the spec names the same one);
    relative input paths in plugin params (see ``InputPath``) are resolved from ``base_dir`` (the spec file's
    directory) when given, else from the working directory."""
    try:
        data = load_yaml(text)
        lines = _line_map(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise SpecError(source, [yaml_problem(error)]) from None
    if not isinstance(data, dict):
        raise SpecError(source, ["the spec must be a YAML mapping (models:, datasets:, selectors:, ...)"])
    if output is not None:
        data["output"] = str(output)
    if executor is not None:
        section = data.get("executor") if isinstance(data.get("executor"), dict) else {}
        data["executor"] = {**section, "plugin": executor,
                            "params": section.get("params", {}) if section.get("plugin") == executor else {}}

    problems: list[str] = []
    try:
        spec: RunSpec | None = RunSpec.model_validate(data)
    except ValidationError as error:
        spec = None
        problems += [_problem(_user_loc(e["loc"], data), _message(e, RunSpec), lines) for e in error.errors()]

    # plugin names and params are checked even when other settings failed, so one pass reports everything
    resolved: dict[str, list[ResolvedPlugin]] = {}
    for group in ("models", "datasets", "selectors"):
        resolved[group] = []
        entries = data.get(group)
        refs = [_plugin_ref(item) for item in entries] if isinstance(entries, list) else []
        labels = [ref.name for ref in refs if ref is not None]
        for index, ref in enumerate(refs):
            if ref is None:  # malformed entry: already reported by RunSpec validation
                continue
            if labels.count(ref.name) > 1:
                problems.append(_problem((group, index, "label"), f"'{ref.name}' is used twice; give a unique "
                                         "label to each use", lines))
            plugin, own_problems = _resolve(registry, group, ref, (group, index), lines, base_dir)
            problems += own_problems
            if plugin is not None:
                resolved[group].append(plugin)
                if group == "selectors" and spec is not None:
                    problem = _ks_problem(plugin, spec.ks, spec.prefilter)
                    if problem:
                        problems.append(_problem((group, index, "params"), problem, lines))
    executor_plugin = None
    if spec is not None:
        executor_ref = PluginRef(plugin=spec.executor.plugin, params=spec.executor.params)
        from_option = executor is not None  # named by `--executor`, not by a line of the file
        executor_plugin, own_problems = _resolve(registry, "executors", executor_ref, ("executor",),
                                                 {} if from_option else lines, base_dir)
        problems += [f"--executor {executor}: {problem}" if from_option else problem for problem in own_problems]
    if problems or spec is None or executor_plugin is None:
        raise SpecError(source, problems)
    # record the normalised params (defaults filled in), so the fingerprint changes when any effective value does
    for group in ("models", "datasets", "selectors"):
        for ref, plugin in zip(getattr(spec, group), resolved[group]):
            ref.params = plugin.params.model_dump(mode="json")
    spec.executor.params = executor_plugin.params.model_dump(mode="json")
    return ValidatedSpec(spec, source, resolved["models"], resolved["datasets"], resolved["selectors"],
                         executor_plugin)


def resolve_plugin(registry: PluginRegistry, group: str, ref: PluginRef, params_option: str) -> ResolvedPlugin:
    """Load one plugin and validate its params outside a spec (e.g. for a preview); an unknown name is reported as
    it is, a params problem prefixed with ``params_option`` (the command-line option that gave them)."""
    registry.get(group, ref.plugin)  # an unknown or broken plugin raises its own message
    plugin, problems = _resolve(registry, group, ref, (), {})
    if plugin is None:
        raise PluginError("; ".join(f"{params_option}: {problem.removeprefix('params.')}" for problem in problems))
    return plugin


def _resolve(
    registry: PluginRegistry, group: str, ref: PluginRef, loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int],
    base_dir: Path | None = None,
) -> tuple[ResolvedPlugin | None, list[str]]:
    try:
        cls = registry.get(group, ref.plugin)
    except PluginError as error:
        return None, [_problem((*loc, "plugin"), str(error), lines)]
    try:
        params = cls.Params.model_validate(ref.params, context={"base_dir": base_dir} if base_dir else None)
    except ValidationError as error:
        return None, [_problem((*loc, "params", *_user_loc(e["loc"], ref.params)), _message(e, cls.Params), lines)
                      for e in error.errors()]
    return ResolvedPlugin(ref.name, ref.plugin, cls, params), []


def _message(error: Any, model: type[BaseModel]) -> str:
    """pydantic's message, with a "did you mean" for an unknown key close to a known one."""
    if error["type"] != "extra_forbidden":
        return error["msg"]
    *parents, key = error["loc"]
    known = _field_names(model, tuple(parents))
    close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listing = f" Known: {', '.join(sorted(known))}." if known else " It takes no parameters."
    return f"unknown key.{hint}{listing}"


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> set[str]:
    """The field names of the model (or union of models) that a pydantic error location points into."""
    models = [model]
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: same model(s)
        fields = [current.model_fields[part] for current in models if part in current.model_fields]
        if fields:
            models = [model for field in fields for model in _models_in(field.annotation)]
        else:  # a union tag pydantic inserted: keep the member it names (by a Literal field such as `kind`)
            tagged = [current for current in models if any(part in typing.get_args(field.annotation)
                                                           for field in current.model_fields.values())]
            models = tagged or models
    return {name for current in models for name in current.model_fields}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model inside an annotation (through Optional, unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return []
    return [model for argument in typing.get_args(annotation) for model in _models_in(argument)]


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loading that refuses a key given twice in one mapping (YAML forbids it; PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key_node.value}' (first at line {first_line[key]})",
                    key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML safely (no Python objects, ever), refusing duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


#: PyYAML contexts whose start, not where the parser noticed, is where the mistake is
_UNCLOSED = {"while parsing a flow sequence": "'[' is never closed", "while parsing a flow mapping":
             "'{' is never closed", "while scanning a quoted scalar": "a quoted string is never closed"}


def parse_params(option: str, text: str) -> dict:
    """A plugin's params given on the command line as YAML or JSON (a mapping)."""
    try:
        parsed = load_yaml(text) or {}
    except yaml.YAMLError as error:
        raise ProbekitError(f"{option}: {yaml_problem(error)}") from None
    if not isinstance(parsed, dict):
        raise ProbekitError(f"{option}: give a mapping, e.g. '{{key: value}}'")
    return parsed


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML error at the line where the mistake is (an unclosed bracket: where it opened)."""
    problem_mark, context_mark = getattr(error, "problem_mark", None), getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    if context in _UNCLOSED and context_mark is not None:
        found = f" at line {problem_mark.line + 1}" if problem_mark is not None else ""
        return f"line {context_mark.line + 1}: not valid YAML: {_UNCLOSED[context]} ({problem}{found})"
    where = f"line {problem_mark.line + 1}: " if problem_mark is not None else ""
    return f"{where}not valid YAML: {problem}"


def _ks_problem(selector: ResolvedPlugin, ks: list[int], n_columns: int) -> str | None:
    """The selector's own objection to ``ks`` (see ``Selector.ks_problem``); a plugin that crashes is named."""
    try:
        return selector.instantiate().ks_problem(ks, n_columns)
    except Exception as error:  # third-party code: report it instead of a traceback
        return f"selector plugin '{selector.name}' failed while checking ks: {type(error).__name__}: {error}"


def _plugin_ref(item: Any) -> PluginRef | None:
    try:
        return PluginRef.model_validate(item)
    except ValidationError:
        return None


def _user_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop the parts of a pydantic error location that the user never wrote: the tag of a discriminated union
    (``source.jsonl.path`` -> ``source.path``) and the type names of plain unions."""
    kept: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node and (
            part in node.values() or any(mark in part for mark in "[]'(")
        ):
            continue  # a union tag or type name pydantic inserted: stay at the same node
        kept.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(kept)


def spec_path(loc: tuple[Any, ...]) -> str:
    """('selectors', 1, 'params', 'time_limit') -> 'selectors[1].params.time_limit'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _problem(loc: tuple[Any, ...], message: str, lines: dict[tuple[Any, ...], int]) -> str:
    line = None
    for end in range(len(loc), -1, -1):  # the deepest part of the path that exists in the file
        if loc[:end] in lines:
            line = lines[loc[:end]]
            break
    where = f"line {line}: " if line is not None else ""
    return f"{where}{spec_path(loc)}: {message.removeprefix('Value error, ')}"


def _line_map(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every spec path to the 1-based line where its value starts."""
    lines: dict[tuple[Any, ...], int] = {}
    if node is None:
        return lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            lines.update(_line_map(value, child))
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_line_map(item, path + (index,)))
    return lines
