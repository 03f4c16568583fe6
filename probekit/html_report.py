"""The HTML report of a run: one self-contained page (figures inlined as PNG, no script, nothing fetched) that a
browser opens offline, with links to the Parquet table and run.json beside it.

Every figure is drawn from the result table alone (numbers from probekit.report_data), except the activation
histograms, which read the activation cache when it still holds the layers. A large run (1,000 features x 32
layers) gives a page of bounded size: the per-feature figures are drawn for the features with the best F1 only,
heatmaps show at most ``heatmap_features`` rows, and long tables are split into pages (``<details>`` blocks).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from probekit.controls import probe_rows
from probekit.figures import new_figure
from probekit.manifest import RunManifest
from probekit.report import best_per_feature, compare_selectors, format_f1, format_selectivity
from probekit.report_data import (
    activation_histograms,
    best_sparse_probes,
    feature_curves,
    layer_maps,
    model_curves,
    sparse_across_models,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class ReportLimits:
    """How much a page shows: figures per kind of per-feature figure, heatmap rows, table rows per page."""

    feature_figures: int = 24
    heatmap_features: int = 60
    table_page: int = 100
    compare_features: int = 40


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.partial { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em 1em; }
.note { color: #555; font-size: 0.9em; } figure { margin: 1em 0; } img { max-width: 100%; }
.grid { display: flex; flex-wrap: wrap; gap: 0.5em; } .grid figure { width: 380px; margin: 0; }
figcaption { font-size: 0.85em; color: #444; }
"""


def _png(figure: Figure) -> str:
    """A figure as an inline ``<img>`` (PNG, base64)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], page: int, numeric: set[int] = frozenset()) -> str:
    """An HTML table; more than ``page`` rows are split into collapsed pages (the first one open)."""
    def one(chunk: list[list[Any]]) -> str:
        head = "".join(f"<th>{_e(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f'<td class="n">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
                                        for i, v in enumerate(row)) + "</tr>" for row in chunk)
        return f"<table><tr>{head}</tr>{body}</table>"

    if len(rows) <= page:
        return one(rows)
    parts = []
    for start in range(0, len(rows), page):
        chunk = rows[start : start + page]
        parts.append(f"<details{' open' if start == 0 else ''}><summary>rows {start + 1}-{start + len(chunk)} of "
                     f"{len(rows)}</summary>{one(chunk)}</details>")
    return "".join(parts)


def _certificate(details: str | None) -> str:
    try:
        parsed = json.loads(details or "{}")
    except ValueError:
        return ""
    if not isinstance(parsed, dict) or "status" not in parsed:
        return ""
    gap = parsed.get("gap")
    return f"{parsed['status']}" + (f", gap {gap:.2g}" if isinstance(gap, (int, float)) else "")


def html_report(run_path: Path, manifest: RunManifest, table: pa.Table, metric: str = "f1",
                limits: ReportLimits = ReportLimits()) -> str:
    """The page of a run directory ``run_path`` (links are relative to it) from its manifest and result table."""
    spec = manifest.spec
    probes = probe_rows(table)
    models = [m.get("label") or m["plugin"] for m in spec["models"]]
    sections: list[tuple[str, str, str]] = []  # (anchor, title, body)

    best = best_per_feature(probes)
    rank = {(b.model, b.dataset, b.feature): -b.sparsest["f1"] for b in best}
    ranked_features = sorted(rank, key=lambda key: (rank[key], key))
    position = {key: index for index, key in enumerate(ranked_features)}
    best.sort(key=lambda b: position[(b.model, b.dataset, b.feature)])  # the best features first
    rows = [[b.feature, f"{b.model} / {b.dataset}", format_f1(b.sparsest), b.sparsest["k"], b.sparsest["layer"],
             " ".join(b.sparsest["neurons"]), b.sparsest["selector"], format_selectivity(b.sparsest),
             _certificate(b.sparsest.get("selector_details")), format_f1(b.densest), b.densest["k"], b.densest["layer"],
             format_selectivity(b.densest)] for b in best]
    sections.append(("best", "Best probe per feature", (
        "<p class=note>Highest test F1 over layers and selectors at the smallest and at the largest k (best first), "
        "with its 95 % "
        "bootstrap interval over test sources. Selectivity: F1 minus the control's F1 (shuffled labels / random "
        "neurons; - where not run). Certificate: the optimal sparse probe's solver status and gap.</p>"
        + _table(["feature", "model / dataset", "F1 sparsest", "k", "layer", "neurons", "selector", "selectivity",
                  "certificate", "F1 densest", "k ", "layer ", "selectivity "], rows, limits.table_page,
                 {2, 3, 4, 9, 10, 11}))))

    maps = layer_maps(probes)
    if maps:
        body = ""
        for layer_map in maps:
            keep = sorted(range(len(layer_map.features)), key=lambda i: position.get(layer_map.features[i], len(
                position)))[: limits.heatmap_features]
            values = np.array([[np.nan if v is None else v for v in layer_map.values[i]] for i in keep], dtype=float)
            figure, (axes,) = new_figure(1, 1, min(12, 1.5 + 0.45 * len(layer_map.layers)),
                                         1.2 + 0.22 * len(keep))
            image = axes[0].imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            axes[0].set_xticks(range(len(layer_map.layers)), [str(x) for x in layer_map.layers])
            axes[0].set_yticks(range(len(keep)), [layer_map.features[i][2] for i in keep], fontsize=7)
            axes[0].set_xlabel("layer")
            axes[0].set_title(f"best test F1 at k = {layer_map.k}")
            figure.colorbar(image, ax=axes[0], shrink=0.6)
            more = len(layer_map.features) - len(keep)
            body += f"<figure>{_png(figure)}<figcaption>Best F1 over selectors per feature and layer, k = " \
                    f"{layer_map.k}{f'; the {len(keep)} best features of {len(layer_map.features)}' if more else ''}" \
                    "</figcaption></figure>"
        sections.append(("layers", "Where each feature lives", body))

    several = len(spec["selectors"]) > 1
    certified = probes.num_rows and pc.any(pc.match_substring(probes.column("selector_details"), '"status"')).as_py()
    summaries = compare_selectors(probes) if several or certified else []
    if len(summaries) > 1 or certified:
        figure, (axes,) = new_figure(1, 2, 5, 3.4)
        for summary in summaries:
            ks = sorted(summary.f1_by_k)
            axes[0].plot(ks, [summary.f1_by_k[k] for k in ks], marker="o", label=summary.selector)
        axes[0].set_xlabel("k")
        axes[0].set_ylabel("mean best-layer F1")
        axes[0].legend(fontsize="small")
        axes[1].barh([s.selector for s in summaries], [s.seconds for s in summaries], color="tab:gray")
        axes[1].set_xlabel("seconds per selection")
        rows = [[s.selector, *(f"{s.f1_by_k.get(k, float('nan')):.3f}" for k in sorted(summaries[0].f1_by_k)),
                 f"{s.seconds:.2f}", f"{s.proved}/{s.certified}" if s.certified else "-"] for s in summaries]
        sections.append(("selectors", "Selectors compared", (
            f"<figure>{_png(figure)}<figcaption>Mean over features of the best layer's test F1 against k, and "
            "seconds per selection (Gurnee et al., Table 4 / figure 6)</figcaption></figure>"
            + _table(["selector", *(f"k={k}" for k in sorted(summaries[0].f1_by_k)), "seconds", "proved optimal"],
                     rows, limits.table_page))))

    if len(models) > 1:
        curves = model_curves(probes, models)
        figure, (axes,) = new_figure(1, min(len(curves), 4), 4.5, 3.4)
        for ax, curve in zip(axes, curves):
            for model, points in curve.models.items():
                ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=model)
            ax.set_title(curve.dataset)
            ax.set_xlabel("k")
            ax.set_ylabel("mean max-over-layers F1")
            ax.legend(fontsize="x-small")
        across = sparse_across_models(probes, models)
        figure_b, (axes_b,) = new_figure(1, 1, 7, 4)
        for (dataset, feature), values in list(across.items())[: limits.compare_features]:
            axes_b[0].plot(models, [np.nan if v is None else v for v in values], marker=".", alpha=0.6)
        axes_b[0].set_ylabel("best F1 at the smallest k")
        axes_b[0].tick_params(axis="x", labelrotation=30)
        sections.append(("models", "Models compared", (
            f"<figure>{_png(figure)}<figcaption>Per dataset: F1 against k, best over layers, averaged over the "
            "features every model has (figure 4a / 7)</figcaption></figure>"
            f"<figure>{_png(figure_b)}<figcaption>Each feature's sparsest best F1 across models (figure 4b; "
            f"{min(len(across), limits.compare_features)} of {len(across)} features)</figcaption></figure>")))

    sparse = best_sparse_probes(probes)
    if sparse:
        figure, (axes,) = new_figure(1, 1, 5, 4.2)
        axes[0].scatter([p.recall for p in sparse], [p.precision for p in sparse], s=14)
        for p in sparse if len(sparse) <= 20 else []:  # more labels would hide the points
            axes[0].annotate(p.feature[2], (p.recall, p.precision), fontsize=6)
        axes[0].set_xlabel("recall")
        axes[0].set_ylabel("precision")
        axes[0].set_xlim(-0.02, 1.02)
        axes[0].set_ylim(-0.02, 1.02)
        sections.append(("precision-recall", "Precision and recall of the sparsest probes", (
            f"<figure>{_png(figure)}<figcaption>The best probe at k = {sparse[0].k} per feature: high precision and "
            "low recall reads as a neuron for a finer feature; the reverse, a coarser one (section 5.4)"
            "</figcaption></figure>")))

    curves_by_feature = feature_curves(table, metric)
    shown = [key for key in ranked_features if key in curves_by_feature][: limits.feature_figures]
    if shown:
        from matplotlib import colormaps

        figures = []
        for key in shown:
            curve = curves_by_feature[key]
            figure, (axes,) = new_figure(1, 1, 4.6, 3.0)
            layers = sorted(curve.layers)
            colours = colormaps["viridis"](np.linspace(0, 1, max(len(layers), 2)))
            for colour, layer in zip(colours, layers):
                axes[0].plot(*zip(*curve.layers[layer]), color=colour, lw=1.2, label=f"L{layer}")
            for name, points in curve.controls.items():
                axes[0].plot(*zip(*points), ls="--", color="0.4" if name == "shuffled_labels" else "tab:red",
                             label=name.replace("_", " "))
            axes[0].set_xlabel("k")
            axes[0].set_ylabel(metric)
            axes[0].set_title(key[2], fontsize=9)
            if len(layers) <= 12 or curve.controls:  # many layers: their gradient says it; controls still named
                handles, labels = axes[0].get_legend_handles_labels()
                keep = [i for i, label in enumerate(labels) if len(layers) <= 12 or not label.startswith("L")]
                axes[0].legend([handles[i] for i in keep], [labels[i] for i in keep], fontsize=6, ncol=2)
            figures.append(f"<figure>{_png(figure)}<figcaption>{_e(key[0])} / {_e(key[1])}</figcaption></figure>")
        more = (f"The {len(shown)} features with the best sparsest F1 of {len(curves_by_feature)}; the table above "
                "lists them all." if len(curves_by_feature) > len(shown) else "")
        metric_name = "F1" if metric == "f1" else metric.replace("_", " ")
        sections.append(("features", f"{metric_name} against k per feature", (
            "<p class=note>One line per layer (dark: early, light: late), best over selectors; controls dashed. "
            f"{more}</p><div class=grid>{''.join(figures)}</div>")))

    cache_dir = Path(spec["cache"]) if spec.get("cache") else None
    histograms, missing = activation_histograms(run_path, cache_dir, sorted(
        sparse, key=lambda p: position.get(p.feature, len(position)))[: limits.feature_figures])
    if histograms or missing:
        figures = []
        for histogram in histograms:
            figure, (axes,) = new_figure(1, 1, 4.6, 2.8)
            for counts, label, colour in ((histogram.negative, "negative", "tab:blue"),
                                          (histogram.positive, "positive", "tab:orange")):
                axes[0].stairs(counts, histogram.edges, label=label, color=colour, fill=True, alpha=0.5)
            p = histogram.probe
            axes[0].set_title(f"{p.feature[2]}: L{p.layer}.N{p.neurons[0]}", fontsize=9)
            axes[0].set_xlabel("activation")
            axes[0].legend(fontsize=7)
            figures.append(f"<figure>{_png(figure)}</figure>")
        notes = "".join(f"<li>{_e(m)}</li>" for m in missing)
        sections.append(("activations", "Activations of each feature's best neuron", (
            "<p class=note>The best 1-sparse neuron's activation on the feature's sites, by class, read from the "
            "activation cache.</p>" + f"<div class=grid>{''.join(figures)}</div>"
            + (f"<p class=note>Not drawn:</p><ul class=note>{notes}</ul>" if notes else ""))))

    if manifest.skipped_features:
        sections.append(("skipped", "Skipped features", _table(
            ["model", "dataset", "feature", "reason"],
            [[s.model, s.dataset, s.feature, s.reason] for s in manifest.skipped_features], limits.table_page)))

    partial = manifest.status != "complete"
    counts = f"{probes.num_rows} probe cells" + (f", {table.num_rows - probes.num_rows} control cells"
                                                if table.num_rows > probes.num_rows else "")
    header = (
        f"<h1>probekit run: {_e(spec.get('name', 'run'))}</h1>"
        + ("<p class=partial><b>Partial report</b>: the run has not finished (interrupted, or still running); this "
           "page shows the cells done so far. Run the same command again to complete it.</p>" if partial else "")
        + f"<p>{counts}; models {_e(', '.join(models))}; datasets "
        f"{_e(', '.join(d.get('label') or d['plugin'] for d in spec['datasets']))}; selectors "
        f"{_e(', '.join(s.get('label') or s['plugin'] for s in spec['selectors']))}; ks {_e(spec['ks'])}. "
        f"Spec <code>{_e(manifest.spec_source)}</code>, fingerprint <code>{_e(manifest.spec_fingerprint)}</code>."
        "</p><p>Data: <a href=\"results/\">results/</a> (Parquet, one file per group of cells), "
        "<a href=\"run.json\">run.json</a> (spec, versions, times, dataset counts), "
        "<a href=\"report.md\">report.md</a>.</p>"
        "<nav><b>Contents</b>: " + " · ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in sections) + "</nav>")
    body = "".join(f'<section id="{a}"><h2>{_e(t)}</h2>{b}</section>' for a, t, b in sections)
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>probekit: {_e(spec.get('name', 'run'))}"
            f"</title><style>{STYLE}</style></head><body>{header}{body}</body></html>\n")
