"""The ``probekit`` command line: run, validate, list-plugins, report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from probekit import __version__
from probekit.contracts import plugin_summary
from probekit.errors import ProbekitError
from probekit.registry import GROUPS, PluginRegistry
from probekit.report import best_per_feature, best_table, markdown_report, selector_table, selectors_to_compare
from probekit.results import RunDirectory, atomic_write_bytes
from probekit.spec import load_spec

if TYPE_CHECKING:
    import pyarrow as pa

app = typer.Typer(
    help="Sparse probing of language-model neurons: find the neurons that encode a feature.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(soft_wrap=True)  # messages stay on one line (greppable); tables still fit
errors = Console(stderr=True, soft_wrap=True)

#: exit code for anything the user can fix (bad spec, unknown plugin, bad data)
BAD_INPUT = 2


def fail(error: ProbekitError) -> typer.Exit:
    """Print a user error (no traceback) and return the exit to raise."""
    errors.print(f"error: {error}", markup=False, highlight=False, style="red")
    return typer.Exit(BAD_INPUT)


def _version(value: bool) -> None:
    if value:
        console.print(f"probekit {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """probekit: k-sparse probes over the MLP neurons of language models."""


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="YAML run spec")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="run directory (overrides the spec)")] = None,
) -> None:
    """Run every (model, dataset feature, layer, selector, k) cell of a spec; re-running resumes."""
    from probekit.sweep import run_sweep  # keeps `--help` and `list-plugins` fast

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        validated = load_spec(spec, PluginRegistry(), output)
        with Progress(*columns, console=console, transient=True) as progress:
            summary = run_sweep(validated, progress)
        run_dir = RunDirectory(Path(summary.run_dir))
        table, manifest = run_dir.read_results(), run_dir.read_manifest() or {}
        atomic_write_bytes(run_dir.path / "report.md", markdown_report(manifest, table).encode())
    except ProbekitError as error:
        raise fail(error) from None
    except KeyboardInterrupt:
        errors.print("interrupted: finished cells are saved; run the same command again to resume", style="yellow")
        raise typer.Exit(130) from None
    print_summary(table)
    for skipped in summary.skipped_features:
        console.print(f"skipped {skipped['feature']} ({skipped['model']} / {skipped['dataset']}): {skipped['reason']}",
                      markup=False, style="dim")
    console.print(f"{summary.new_rows} new result rows, {summary.reused_cells} cells already on disk; "
                  f"results in {run_dir.results_dir}, report in {run_dir.path / 'report.md'}", markup=False)


def print_summary(table: pa.Table) -> None:
    """The best probe per feature, and the selectors compared when a run has several (or certificates)."""
    console.print(best_table(best_per_feature(table)))
    summaries = selectors_to_compare(table)
    if summaries:
        console.print(selector_table(summaries))


@app.command()
def validate(spec: Annotated[Path, typer.Argument(help="YAML run spec")]) -> None:
    """Check a spec and that every plugin it names exists, without running anything."""
    try:
        validated = load_spec(spec, PluginRegistry())
    except ProbekitError as error:
        raise fail(error) from None
    s = validated.spec
    console.print(
        f"{spec}: valid (fingerprint {s.fingerprint}): {len(s.models)} model(s), {len(s.datasets)} dataset(s), "
        f"layers {s.layers}, {len(s.selectors)} selector(s), ks {s.ks}, output {s.output}",
        markup=False,
    )


@app.command("list-plugins")
def list_plugins(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Every dataset, selector and model adapter installed, built-in or third-party."""
    registry = PluginRegistry()
    listing: dict[str, list[dict[str, Any]]] = {}
    for group in GROUPS:
        usable, broken = registry.survey(group)
        listing[group] = [
            {"name": entry.name, "package": entry.package, "target": entry.target, "summary": plugin_summary(cls),
             "parameters": describe_params(cls.Params), "error": None}
            for entry, cls in usable
        ] + [
            {"name": b.entry.name, "package": b.entry.package, "target": b.entry.target, "summary": "",
             "parameters": [], "error": b.error}
            for b in broken
        ]
    if as_json:
        print(json.dumps(listing, indent=2))
        return
    for group, plugins in listing.items():
        table = Table(title=f"{group} ({GROUPS[group][0]})", show_lines=True)
        for column in ("name", "summary", "package", "parameters"):
            table.add_column(column, overflow="fold")
        for plugin in sorted(plugins, key=lambda p: p["name"]):
            if plugin["error"]:
                table.add_row(plugin["name"], f"[red]BROKEN[/red]: {_escape(plugin['error'])}", plugin["package"], "")
                continue
            params = "\n".join(
                f"{p['name']}: {p['type']}" + (f" = {_shorten(p['default'])}" if p["default"] is not None else "")
                + (f" — {p['description']}" if p["description"] else "")
                for p in plugin["parameters"]
            )
            table.add_row(plugin["name"], _escape(plugin["summary"]), plugin["package"], _escape(params) or "-")
        console.print(table)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Show the best probe per feature of a finished (or interrupted) run and rewrite its report.md."""
    directory = RunDirectory(run_dir)
    try:
        manifest = directory.read_manifest()
    except ProbekitError as error:
        raise fail(error) from None
    if manifest is None:
        raise fail(ProbekitError(f"{run_dir} is not a probekit run directory (no run.json)"))
    table = directory.read_results()
    atomic_write_bytes(directory.path / "report.md", markdown_report(manifest, table).encode())
    print_summary(table)
    console.print(f"{table.num_rows} result rows; report written to {directory.path / 'report.md'}", markup=False)


datasets_app = typer.Typer(help="Look at dataset plugins.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("preview")
def datasets_preview(
    name: Annotated[str, typer.Argument(help="dataset plugin name (see list-plugins)")],
    params: Annotated[str, typer.Option("--params", help="the plugin's params as YAML or JSON, e.g. "
                                        "'{max_sequences: 20}'")] = "{}",
    model: Annotated[str, typer.Option("--model", help="model adapter whose tokenizer is used")] = "minilm",
    model_params: Annotated[str, typer.Option("--model-params", help="the adapter's params as YAML or JSON")] = "{}",
    examples: Annotated[int, typer.Option("--examples", help="sequences shown per feature")] = 2,
    feature: Annotated[Optional[list[str]], typer.Option("--feature", help="only these features")] = None,
) -> None:
    """Build a dataset on a model's tokenizer (no weights loaded): class counts and marked examples."""
    import yaml

    from probekit.preview import NEGATIVE, POSITIVE, class_counts, feature_examples
    from probekit.spec import PluginRef, resolve_plugin

    registry = PluginRegistry()
    try:
        parsed = {}
        for option, text in (("--params", params), ("--model-params", model_params)):
            try:
                parsed[option] = yaml.safe_load(text) or {}
            except yaml.YAMLError as error:
                raise ProbekitError(f"{option}: not valid YAML/JSON: {error}") from None
            if not isinstance(parsed[option], dict):
                raise ProbekitError(f"{option}: give a mapping, e.g. '{{key: value}}'")
        adapter = resolve_plugin(registry, "models", PluginRef(plugin=model, params=parsed["--model-params"]),
                                 "--model").instantiate()
        dataset_plugin = resolve_plugin(registry, "datasets", PluginRef(plugin=name, params=parsed["--params"]),
                                        "--params")
        dataset = dataset_plugin.instantiate().build(adapter.tokenizer)
    except ProbekitError as error:
        raise fail(error) from None
    console.print(class_counts(dataset))
    console.print(Text.assemble("probed tokens: ", ("positive", POSITIVE), " ", ("negative", NEGATIVE)))
    for chosen in dataset.features if examples > 0 else []:
        if feature and chosen.name not in feature:
            continue
        console.rule(chosen.name)
        for line in feature_examples(dataset, adapter.tokenizer, chosen.name, examples):
            console.print(line)


cache_app = typer.Typer(help="Inspect and clean the activation cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CacheDir = Annotated[Path, typer.Option("--dir", help="cache directory (a spec's 'cache:')")]


@cache_app.command("ls")
def cache_ls(directory: CacheDir = Path(".probekit-cache")) -> None:
    """List cached activation matrices: model, dataset, layer, shape, size, and any damage."""
    from probekit.cache import ActivationCache

    entries = sorted(ActivationCache(directory).entries(),
                     key=lambda e: (e.get("labels", {}).get("model", ""), e.get("labels", {}).get("dataset", ""),
                                    e.get("key", {}).get("layer", -1)))
    table = Table(title=f"activation cache {directory}")
    for column in ("entry", "model", "dataset", "layer", "shape", "size", "state"):
        table.add_column(column, overflow="fold", no_wrap=column == "entry")
    for entry in entries:
        labels, key = entry.get("labels", {}), entry.get("key", {})
        table.add_row(Path(entry["path"]).stem, _escape(labels.get("model", key.get("model", "?"))),
                      _escape(labels.get("dataset", "?")), str(key.get("layer", "?")),
                      " x ".join(map(str, entry.get("shape", []))), human_bytes(entry["size"]),
                      "ok" if entry["problem"] is None else f"[red]{_escape(entry['problem'])}[/red]")
    console.print(table)
    console.print(f"{len(entries)} entries, {human_bytes(ActivationCache(directory).total_bytes())}", markup=False)


@cache_app.command("du")
def cache_du(directory: CacheDir = Path(".probekit-cache")) -> None:
    """Total size of the cache."""
    from probekit.cache import ActivationCache

    cache = ActivationCache(directory)
    console.print(f"{human_bytes(cache.total_bytes())} in {len(cache.entries())} entries ({directory})", markup=False)


@cache_app.command("rm")
def cache_rm(
    entries: Annotated[Optional[list[str]], typer.Argument(help="entry ids from `cache ls` (default: all)")] = None,
    directory: CacheDir = Path(".probekit-cache"),
) -> None:
    """Remove cache entries (all of them when none are named)."""
    from probekit.cache import ActivationCache

    cache = ActivationCache(directory)
    if entries:
        unknown = set(entries) - {Path(e["path"]).stem for e in cache.entries()}
        if unknown:
            raise fail(ProbekitError(f"no cache entry {', '.join(sorted(unknown))} in {directory}"))
    freed = cache.remove(entries or None)
    console.print(f"removed {human_bytes(freed)} from {directory}", markup=False)


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def describe_params(params: type) -> list[dict[str, Any]]:
    """Name, type, default and description of every field of a plugin's ``Params``."""
    described = []
    for name, info in params.model_fields.items():  # type: ignore[attr-defined]
        if info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            default = info.default_factory()
        else:
            default = None
        if hasattr(default, "model_dump"):
            default = default.model_dump()
        described.append({
            "name": name,
            "type": re.sub(r"\b(?:[a-z_]\w*\.)+(?=[A-Za-z_])", "", str(info.annotation))
            .replace("<class '", "").replace("'>", ""),
            "default": None if default is None else json.dumps(default, default=str),
            "required": info.is_required(),
            "description": info.description or "",
        })
    return described


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
