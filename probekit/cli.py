"""The ``probekit`` command line: run, plan, validate, list-plugins, report, datasets, cache, inspect."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from pydantic_core import PydanticUndefined, to_jsonable_python
from rich.table import Table
from rich.text import Text

from probekit import __version__
from probekit.cache_cli import cache_app
from probekit.contracts import plugin_summary
from probekit.errors import ProbekitError
from probekit.files import atomic_write_bytes
from probekit.inspect_cli import inspect_app
from probekit.progress import progress_display
from probekit.registry import GROUPS, PluginRegistry
from probekit.report import best_per_feature, best_table, markdown_report, selector_table, selectors_to_compare
from probekit.results import RunDirectory
from probekit.spec import load_spec
from probekit.terminal import console, errors, escape, fail, human_bytes, show, user_errors, warn

if TYPE_CHECKING:
    import pyarrow as pa

app = typer.Typer(
    help="Sparse probing of language-model neurons: find the neurons that encode a feature.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: typer's rich help labels every flag '<bool>'
)
#: exit codes of a run stopped by Ctrl-C (SIGINT) or SIGTERM, as a shell reports them
INTERRUPTED, TERMINATED = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or ``kill``), handled like Ctrl-C: partial files are removed, finished cells kept."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


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
    executor: Annotated[Optional[str], typer.Option(
        "--executor", "-e", help="where units run: local, processes, slurm, ray, ... (overrides the spec's "
        "executor; see `probekit list-plugins`)")] = None,
) -> None:
    """Run every (model, dataset feature, layer, selector, k) cell of a spec; re-running resumes."""
    from probekit.sweep import run_sweep  # keeps `--help` and `list-plugins` fast

    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with user_errors("the run directory or the activation cache",
                         "every result part already written is complete; the run resumes from them"):
            validated = load_spec(spec, PluginRegistry(), output, executor)
            with progress_display() as progress:
                summary = run_sweep(validated, progress)
            run_dir = RunDirectory(Path(summary.run_dir))
            table, manifest = run_dir.read_results(), run_dir.read_manifest()
            if manifest is None:  # the sweep wrote it; only a concurrent removal gets here
                raise ProbekitError(f"{run_dir.manifest_path} disappeared during the run")
            # a run that computed nothing keeps its page (drawing it again costs about 2 s and changes nothing)
            page = run_dir.path / "report.html"
            stale = (summary.new_rows > 0 or not page.exists()
                     or (manifest.status == "complete") == ("Partial report" in page.read_text(errors="replace")))
            write_reports(run_dir, manifest, table, html=table.num_rows > 0 and stale)
    except KeyboardInterrupt as interruption:
        what = "terminated" if isinstance(interruption, Terminated) else "interrupted"
        errors.print(f"{what}: finished cells are saved; run the same command again to resume", style="yellow")
        raise typer.Exit(TERMINATED if isinstance(interruption, Terminated) else INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    for skipped in summary.skipped_features:
        console.print(f"skipped {skipped.feature} ({skipped.model} / {skipped.dataset}): {skipped.reason}",
                      markup=False, style="dim")
    if table.num_rows == 0 and not summary.failed_units:
        warn("no result rows: every feature was skipped (see above), so there is nothing to report")
        return
    if table.num_rows:
        print_summary(table)
    console.print(f"{summary.new_rows} new result rows, {summary.reused_cells} cells already on disk; "
                  f"results in {run_dir.results_dir}, report in {run_dir.path / 'report.html'} (and report.md)",
                  markup=False)
    if summary.failed_units:
        report_failed_units(summary.failed_units, summary.executor)
        raise typer.Exit(1)


def report_failed_units(failed: list[Any], executor: str) -> None:
    """Each unit that still failed after its retries, with its error and log; the run is incomplete (exit 1)."""
    errors.print(f"{len(failed)} unit(s) failed on executor '{executor}' after their retries; their cells are "
                 "missing (finished cells are saved: run the same command again to retry them):",
                 style="red", markup=False, highlight=False)
    for unit in failed:
        where = f" (log: {unit.log})" if unit.log else ""
        errors.print(f"  {unit.name}: {unit.error}{where}", markup=False, highlight=False)


def print_summary(table: pa.Table) -> None:
    """The best probe per feature, and the selectors compared when a run has several (or certificates)."""
    show(best_table(best_per_feature(table)))
    summaries = selectors_to_compare(table)
    if summaries:
        show(selector_table(summaries))


@app.command()
def plan(
    spec: Annotated[Path, typer.Argument(help="YAML run spec")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="run directory (overrides the spec)")] = None,
    executor: Annotated[Optional[str], typer.Option("--executor", "-e", help="executor to plan for")] = None,
) -> None:
    """Size a run before starting it: cells, units, tokens to extract, cache size, cells already done.

    Loads tokenizers and configs, never model weights; reads the run directory without changing it."""
    from probekit.plan import plan_sweep

    with user_errors("the run directory", "nothing was written"):
        validated = load_spec(spec, PluginRegistry(), output, executor)
        planned = plan_sweep(validated)
    table = Table("model", "dataset", "layers", "tokens", "sites", "features", "cells", "done", "probe units",
                  "cache", title=f"plan: {spec} on executor '{planned.executor}' ({planned.parallelism} at once)")

    def count(value: int | None) -> str:
        return "?" if value is None else f"{value:,}"

    for pair in planned.pairs:
        table.add_row(pair.model, pair.dataset, count(pair.layers), count(pair.tokens), count(pair.sites),
                      count(pair.features), count(pair.cells), count(pair.done), count(pair.probe_units),
                      "?" if pair.cache_bytes is None else human_bytes(pair.cache_bytes))
    show(table)
    extraction = sum(pair.needs_extraction for pair in planned.pairs)
    console.print(f"{planned.total('cells'):,} cells, {planned.total('done'):,} already done; "
                  f"{extraction} extraction unit(s) at most (fewer when the cache holds them), "
                  f"{planned.total('probe_units'):,} probe unit(s); {planned.total('tokens'):,} tokens to extract; "
                  f"activation cache {human_bytes(planned.total('cache_bytes'))}", markup=False)
    for pair in planned.unknown:
        warn(f"{pair.model} / {pair.dataset}: unknown ({pair.problem})")


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
                table.add_row(plugin["name"], f"[red]BROKEN[/red]: {escape(plugin['error'])}", plugin["package"], "")
                continue
            params = "\n".join(
                f"{p['name']}: {p['type']}" + ("" if p["required"] else f" = {_shorten(json.dumps(p['default']))}")
                + (f" — {p['description']}" if p["description"] else "")
                for p in plugin["parameters"]
            )
            table.add_row(plugin["name"], escape(plugin["summary"]), plugin["package"], escape(params) or "-")
        show(table)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory")],
    html: Annotated[bool, typer.Option("--html", help="also write report.html: the figures and tables in one "
                                       "self-contained page")] = False,
    metric: Annotated[str, typer.Option("--metric", help="metric of the per-feature figures (with --html): f1, "
                                        "precision, recall, mcc, accuracy, balanced_accuracy, roc_auc")] = "f1",
) -> None:
    """Show the best probe per feature of a finished (or interrupted) run and rewrite its report.md (and with --html
    its report.html)."""
    from probekit.probing import METRICS

    directory = RunDirectory(run_dir)
    with user_errors(f"the report in {directory.path}"):
        if metric not in METRICS:
            raise ProbekitError(f"--metric {metric}: choose one of {', '.join(METRICS)}")
        if not directory.path.is_dir():
            raise ProbekitError(f"{run_dir}: no such run directory")
        manifest = directory.read_manifest()
        if manifest is None:
            raise ProbekitError(f"{run_dir} is not a probekit run directory (no run.json)")
        table = directory.read_results()
        if table.num_rows == 0 and not manifest.skipped_features:
            raise ProbekitError(f"{run_dir} holds no result rows yet: `probekit run` its spec first "
                                f"({manifest.spec_source})")
        write_reports(directory, manifest, table, html, metric)
    if table.num_rows:
        print_summary(table)
    else:
        warn("no result rows: every feature was skipped (the reasons are in report.md)")
    partial = "" if manifest.status == "complete" else " (partial: the run has not finished)"
    written = "report.md" + (" and report.html" if html else "")
    console.print(f"{table.num_rows} result rows{partial}; {written} written to {directory.path}", markup=False)


def write_reports(directory: RunDirectory, manifest: Any, table: pa.Table, html: bool, metric: str = "f1") -> None:
    """report.md, and report.html when asked, in the run directory."""
    atomic_write_bytes(directory.path / "report.md", markdown_report(manifest, table).encode())
    if html:
        from probekit.html_report import html_report

        atomic_write_bytes(directory.path / "report.html",
                           html_report(directory.path, manifest, table, metric).encode())


datasets_app = typer.Typer(help="Look at dataset plugins.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("preview")
def datasets_preview(
    name: Annotated[str, typer.Argument(help="dataset plugin name (see list-plugins)")],
    model: Annotated[str, typer.Option("--model", help="model adapter whose tokenizer is used; `probekit "
                                       "list-plugins` lists the installed ones")],
    params: Annotated[str, typer.Option("--params", help="the plugin's params as YAML or JSON, e.g. "
                                        "'{max_sequences: 20}'")] = "{}",
    model_params: Annotated[str, typer.Option("--model-params", help="the adapter's params as YAML or JSON")] = "{}",
    examples: Annotated[int, typer.Option("--examples", help="sequences shown per feature")] = 2,
    feature: Annotated[Optional[list[str]], typer.Option("--feature", help="only these features")] = None,
) -> None:
    """Build a dataset on a model's tokenizer (no weights loaded): class counts and marked examples."""
    from probekit.errors import guarded
    from probekit.preview import NEGATIVE, POSITIVE, class_counts, feature_examples
    from probekit.spec import PluginRef, parse_params, resolve_plugin
    from probekit.units import check_dataset

    registry = PluginRegistry()
    try:
        parsed = {option: parse_params(option, text) for option, text in (("--params", params),
                                                                          ("--model-params", model_params))}
        model_ref = resolve_plugin(registry, "models", PluginRef(plugin=model, params=parsed["--model-params"]),
                                   "--model-params")
        adapter = guarded(model_ref.instantiate, f"model '{model}' failed to load")
        dataset_ref = resolve_plugin(registry, "datasets", PluginRef(plugin=name, params=parsed["--params"]),
                                     "--params")
        dataset = guarded(lambda: dataset_ref.instantiate().build(adapter.tokenizer),
                          f"dataset '{name}' failed to build for model '{model}'")
        check_dataset(dataset, dataset_ref, model)
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


app.add_typer(cache_app, name="cache")
app.add_typer(inspect_app, name="inspect")


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
        described.append({
            "name": name,
            "type": re.sub(r"\b(?:[a-z_]\w*\.)+(?=[A-Za-z_])", "", str(info.annotation))
            .replace("<class '", "").replace("'>", ""),
            "default": to_jsonable_python(default, fallback=str),
            "required": info.is_required(),
            "description": info.description or "",
        })
    return described


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
