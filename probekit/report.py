"""Summaries of a run's result table: the best probe per feature and the selectors compared, as rich tables and as
Markdown."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from rich.table import Table

from probekit.controls import probe_rows
from probekit.manifest import RunManifest

#: a best probe scored on fewer test positives, or fewer test groups (sources), than this is flagged: its F1 and
#: interval say little
FEW_TEST_POSITIVES = 20
FEW_TEST_GROUPS = 10


@dataclass(frozen=True)
class BestProbe:
    """For one (model, dataset, feature): the best sparsest probe and the best probe at the largest k."""

    model: str
    dataset: str
    feature: str
    sparsest: dict[str, Any]
    densest: dict[str, Any]


def best_per_feature(table: pa.Table) -> list[BestProbe]:
    """Highest test F1 over layers and selectors at the smallest and at the largest k, per feature."""
    rows = probe_rows(table).select(["model", "dataset", "feature", "layer", "selector", "k", "neurons", "f1", "f1_low",
                                     "f1_high", "n_test_positive", "n_test_groups", "selectivity_shuffled",
                                     "selectivity_random", "selector_details"]).to_pylist()
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["dataset"], row["feature"]), []).append(row)
    best = []
    for (model, dataset, feature), members in sorted(groups.items()):
        k_low = min(r["k"] for r in members)
        k_high = max(r["k"] for r in members)
        sparsest = max((r for r in members if r["k"] == k_low), key=lambda r: (r["f1"], -r["layer"]))
        densest = max((r for r in members if r["k"] == k_high), key=lambda r: (r["f1"], -r["layer"]))
        best.append(BestProbe(model, dataset, feature, sparsest, densest))
    return best


def format_f1(row: dict[str, Any]) -> str:
    """F1 with its 95 % bootstrap interval, e.g. '0.912 (0.884-0.938)'."""
    if row.get("f1_low") is None or math.isnan(row["f1_low"]):
        return f"{row['f1']:.3f} (n/a)"
    return f"{row['f1']:.3f} ({row['f1_low']:.3f}-{row['f1_high']:.3f})"


def _note(best: BestProbe) -> str:
    positives, groups = best.sparsest["n_test_positive"], best.sparsest["n_test_groups"]
    notes = [f"only {positives} test positives"] if positives < FEW_TEST_POSITIVES else []
    if groups < FEW_TEST_GROUPS:
        notes.append(f"{groups} test source{'s' if groups != 1 else ''}")
    return ", ".join(notes)


def format_selectivity(row: dict[str, Any]) -> str:
    """Selectivity against the controls run, e.g. '0.91 / 0.42' (shuffled labels / random neurons)."""
    return " / ".join("-" if row.get(column) is None else f"{row[column]:.2f}"
                      for column in ("selectivity_shuffled", "selectivity_random"))


def _columns(best: list[BestProbe]) -> tuple[list[str], list[list[str]]]:
    header = ["feature", "model / dataset", "F1 sparsest (95% CI)", "where", "selectivity", "F1 densest (95% CI)",
              "where ", "selectivity ", "note"]
    lines = []
    for b in best:
        s, d = b.sparsest, b.densest
        neurons = " ".join(n.split(".", 1)[1] for n in s["neurons"][:3]) + (" ..." if len(s["neurons"]) > 3 else "")
        lines.append([
            b.feature, f"{b.model} / {b.dataset}",
            format_f1(s), f"k={s['k']} L{s['layer']} {neurons} {s['selector']}", format_selectivity(s),
            format_f1(d), f"k={d['k']} L{d['layer']} {d['selector']}", format_selectivity(d), _note(b),
        ])
    shown = [index for index, name in enumerate(header)
             if not (name == "note" and not any(line[index] for line in lines))  # no note to show
             and not (name.startswith("selectivity") and all(line[index] == "- / -" for line in lines))]
    return [header[i] for i in shown], [[line[i] for i in shown] for line in lines]


def best_table(best: list[BestProbe]) -> Table:
    """A rich table of :func:`best_per_feature`; model / dataset move to the title when there is only one."""
    header, lines = _columns(best)
    pairs = {line[1] for line in lines}
    single = len(pairs) == 1
    title = "Best probe per feature (test F1)" + (f": {next(iter(pairs))}" if single else "")
    table = Table(title=title)
    for index, name in enumerate(header):
        if single and index == 1:
            continue
        table.add_column(name, justify="right" if "F1" in name else "left", overflow="fold")
    for line in lines:
        table.add_row(*(cell for index, cell in enumerate(line) if not (single and index == 1)))
    return table


@dataclass(frozen=True)
class SelectorSummary:
    """One selector over a run, as Gurnee et al.'s Table 4 reports it: per k, the mean over (model, dataset, feature)
    of the best test F1 over layers; the mean seconds of one selection (every k of one feature and layer); and, for
    selectors whose details carry a solver ``status``, how many cells were proved ``optimal``."""

    selector: str
    f1_by_k: dict[int, float]
    seconds: float
    proved: int | None = None
    certified: int | None = None


def compare_selectors(table: pa.Table) -> list[SelectorSummary]:
    """A :class:`SelectorSummary` per selector, in the order the selectors first appear in the table."""
    rows = probe_rows(table).select(["model", "dataset", "feature", "layer", "selector", "k", "f1", "select_seconds",
                                     "selector_details"]).to_pylist()
    best: dict[tuple[str, int], dict[tuple[str, str, str], float]] = {}
    # one selection call covers all its ks and every row repeats its time; a resumed run may hold several calls
    calls: dict[str, dict[tuple[str, str, str, int], set[float]]] = {}
    certificates: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        name, feature = row["selector"], (row["model"], row["dataset"], row["feature"])
        per_feature = best.setdefault((name, row["k"]), {})
        per_feature[feature] = max(per_feature.get(feature, -1.0), row["f1"])
        calls.setdefault(name, {}).setdefault((*feature, row["layer"]), set()).add(row["select_seconds"])
        details = json.loads(row["selector_details"] or "{}")
        if isinstance(details, dict) and "status" in details:
            certificates.setdefault(name, []).append(details)
    summaries = []
    for name in calls:
        ks = sorted(k for selector, k in best if selector == name)
        f1_by_k = {k: sum(best[(name, k)].values()) / len(best[(name, k)]) for k in ks}
        seconds = sum(sum(times) for times in calls[name].values()) / len(calls[name])
        certified = certificates.get(name)
        if certified:
            summaries.append(SelectorSummary(name, f1_by_k, seconds, sum(d["status"] == "optimal" for d in certified),
                                             len(certified)))
        else:
            summaries.append(SelectorSummary(name, f1_by_k, seconds))
    return summaries


def selectors_to_compare(table: pa.Table) -> list[SelectorSummary]:
    """:func:`compare_selectors` when there is something to compare (several selectors, or certificates), else []."""
    summaries = compare_selectors(table)
    return summaries if len(summaries) > 1 or any(summary.certified for summary in summaries) else []


def _selector_columns(summaries: list[SelectorSummary]) -> tuple[list[str], list[list[str]]]:
    ks = sorted({k for summary in summaries for k in summary.f1_by_k})
    header = ["selector", *(f"k={k}" for k in ks), "seconds", "proved"]
    lines = []
    for summary in summaries:
        proof = f"{summary.proved}/{summary.certified}" if summary.certified else "-"
        lines.append([summary.selector, *(f"{summary.f1_by_k[k]:.3f}" if k in summary.f1_by_k else "-" for k in ks),
                      f"{summary.seconds:.2f}", proof])
    return header, lines


def selector_table(summaries: list[SelectorSummary]) -> Table:
    """A rich table of :func:`compare_selectors`."""
    header, lines = _selector_columns(summaries)
    table = Table(title="Selectors: mean over features of the best layer's test F1 (Gurnee et al., Table 4)")
    for name in header:
        table.add_column(name, justify="left" if name == "selector" else "right", no_wrap=name == "selector")
    for line in lines:
        table.add_row(*line)
    return table


def markdown_report(manifest: RunManifest | Mapping[str, Any], table: pa.Table) -> str:
    """A Markdown report of a run: what ran, the best probe per feature, and skipped features. ``manifest`` is the
    run's manifest, or a ``run.json`` document as ``json.load`` returns it."""
    if not isinstance(manifest, RunManifest):
        manifest = RunManifest.from_document(dict(manifest))
    spec = manifest.spec
    header, lines = _columns(best_per_feature(table))
    probes = probe_rows(table).num_rows
    text = [
        f"# probekit run: {spec.get('name', 'run')}",
        "",
        f"- spec: `{manifest.spec_source}` (fingerprint `{manifest.spec_fingerprint}`)",
        f"- status: {manifest.status}; result rows: {table.num_rows}"
        + (f" ({probes} probes, {table.num_rows - probes} control cells)" if probes < table.num_rows else ""),
        f"- models: {', '.join(m.get('label') or m['plugin'] for m in spec['models'])}; "
        f"datasets: {', '.join(d.get('label') or d['plugin'] for d in spec['datasets'])}; "
        f"selectors: {', '.join(s.get('label') or s['plugin'] for s in spec['selectors'])}; ks: {spec['ks']}",
        "",
        "## Best probe per feature (test F1)",
        "",
        "In parentheses: the 95 % bootstrap interval of F1 over the test split's groups (its sources: documents, "
        f"entities, identical texts; n/a with a single test source). A best probe scored on fewer than "
        f"{FEW_TEST_POSITIVES} test positives or {FEW_TEST_GROUPS} test sources is noted: its F1 says little."
        + (" Selectivity: the F1 minus the F1 of its control with shuffled training labels / with k random neurons "
           "of the layer (- where that control was not run)." if any(h.startswith("selectivity") for h in header)
           else ""),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(line) + " |" for line in lines),
    ]
    summaries = selectors_to_compare(table)
    if summaries:
        selector_header, selector_lines = _selector_columns(summaries)
        text += [
            "",
            "## Selectors compared",
            "",
            "Mean over features of the best layer's test F1 per k (Gurnee et al. 2023, Table 4); seconds per "
            "selection (all ks of one feature and layer); for selectors with a certificate, the cells proved optimal "
            "(status and gap of each cell are in `selector_details`).",
            "",
            "| " + " | ".join(selector_header) + " |",
            "|" + "---|" * len(selector_header),
            *("| " + " | ".join(line) + " |" for line in selector_lines),
        ]
    if manifest.skipped_features:
        text += ["", "## Skipped features", ""]
        text += [f"- {s.model} / {s.dataset} / {s.feature}: {s.reason}" for s in manifest.skipped_features]
    return "\n".join(text) + "\n"
