"""The public surface for plugin authors: everything a dataset, selector or model adapter needs, and nothing else.

Import from here (``from probekit.api import DatasetPlugin, sample_balanced, ...``); every other module of probekit
is private and may change without notice. The built-in plugins import only from here, as a third party would.
``docs/api-reference.md`` lists every name with its summary (``python -m probekit.api_reference`` writes it).
``probekit.testing`` is the conformance kit a plugin package runs in its own tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probekit.contracts import (
    API_VERSION,
    AblationResult,
    Aggregation,
    BatchSites,
    DatasetPlugin,
    ExecutionContext,
    Executor,
    Feature,
    FinalNorm,
    InputPath,
    Job,
    JobOutcome,
    ModelAdapter,
    NeuronWeights,
    Plugin,
    PluginParams,
    ProbeSites,
    ProbingDataset,
    Selection,
    Selector,
    SkippedFeature,
    TokenBatch,
    dataset_problems,
    failure,
)
from probekit.datasets.alignment import (
    INSIDE,
    OUTSIDE,
    STRADDLES,
    TokenizedDocument,
    core_spans,
    first_overlapping,
    mask_labels,
    tokenize_documents,
    tokenize_lazily,
    tokens_containing,
    tokens_overlapping,
    visible_tokens,
    whitespace_mask,
)
from probekit.datasets.files import csv_records, jsonl_records, read_text, records, resolve_files, table_columns
from probekit.datasets.params import (
    MaxExamples,
    PositiveShare,
    SamplingParams,
    Seed,
    SequenceLength,
    SkipFirst,
    WindowParams,
)
from probekit.datasets.sampling import (
    CandidateSites,
    FeatureDraw,
    PositiveFraction,
    assemble_dataset,
    sample_balanced,
    sample_with_negative_pools,
)
from probekit.datasets.sources import (
    FilesSource,
    GnomeHelpSource,
    HubSource,
    JsonlSource,
    LabeledDocument,
    LabeledSource,
    MixtureSource,
    PythonCodeSource,
    StdlibSource,
    SystemFilesSource,
    TableSource,
    TextSource,
    documents_by_label,
    read_documents,
    read_sourced_documents,
)
from probekit.datasets.windows import (
    SpecialFrame,
    Window,
    assemble_windows,
    content_length,
    cut_windows,
    special_frame,
    window_sites,
)
from probekit.errors import PluginError, ProbekitError, RunError, SpecError
from probekit.hub import hub_endpoint, hub_problem, unreachable_error
from probekit.probing import mean_difference, top_k
from probekit.ranking import RankingSelector

if TYPE_CHECKING:
    from probekit.sites import reduce_to_sites
    from probekit.tracing import NNsightAdapter
    from probekit.units import run_unit

__all__ = [
    "API_VERSION",
    # contracts
    "AblationResult", "Aggregation", "BatchSites", "DatasetPlugin", "Feature", "FinalNorm", "InputPath", "ModelAdapter",
    "NeuronWeights", "Plugin", "PluginParams", "ProbeSites", "ProbingDataset", "Selection", "Selector",
    "SkippedFeature", "TokenBatch", "dataset_problems",
    # errors
    "PluginError", "ProbekitError", "RunError", "SpecError",
    # datasets: shared params
    "MaxExamples", "PositiveFraction", "PositiveShare", "SamplingParams", "Seed", "SequenceLength", "SkipFirst",
    "WindowParams",
    # datasets: sources and files
    "FilesSource", "GnomeHelpSource", "HubSource", "JsonlSource", "LabeledDocument", "LabeledSource", "MixtureSource",
    "PythonCodeSource", "StdlibSource", "SystemFilesSource", "TableSource", "TextSource", "csv_records",
    "documents_by_label", "jsonl_records", "read_documents", "read_sourced_documents", "read_text", "records",
    "resolve_files", "table_columns",
    # datasets: tokens, windows, sampling
    "INSIDE", "OUTSIDE", "STRADDLES", "TokenizedDocument", "core_spans", "first_overlapping", "mask_labels",
    "tokenize_documents", "tokenize_lazily", "tokens_containing", "tokens_overlapping", "visible_tokens",
    "whitespace_mask",
    "SpecialFrame", "Window", "assemble_windows", "content_length", "cut_windows", "special_frame", "window_sites",
    "CandidateSites", "FeatureDraw", "assemble_dataset", "sample_balanced", "sample_with_negative_pools",
    # selectors
    "RankingSelector", "mean_difference", "top_k",
    # model adapters
    "NNsightAdapter", "hub_endpoint", "hub_problem", "reduce_to_sites", "unreachable_error",
    # executors
    "ExecutionContext", "Executor", "Job", "JobOutcome", "failure", "run_unit",
]


def __getattr__(name: str) -> object:
    """``NNsightAdapter``, ``reduce_to_sites`` and ``run_unit`` are imported on first use: nnsight and torch are
    heavy (a probe unit, which only reads the cache, starts seconds sooner without them), and importing nnsight early
    upsets some pytest plugins (anyio), which a plugin package's test suite may load after importing probekit.api."""
    if name == "NNsightAdapter":
        from probekit.tracing import NNsightAdapter

        return NNsightAdapter
    if name == "reduce_to_sites":
        from probekit.sites import reduce_to_sites

        return reduce_to_sites
    if name == "run_unit":
        from probekit.units import run_unit

        return run_unit
    raise AttributeError(f"module 'probekit.api' has no attribute {name!r}")
