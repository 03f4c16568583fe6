"""The contracts every plugin implements: datasets, model adapters and neuron selectors.

A plugin is a class with a one-line docstring summary, a strict pydantic ``Params`` model (its section of the run
spec) and a constructor taking validated params. Built-in and third-party plugins subclass the same bases here and
register through the same entry-point groups (see ``probekit.registry``).
"""

from __future__ import annotations

import hashlib
import os
import traceback
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made (extraction, adapters), not by probe units
    import torch

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo

#: version of the plugin contracts; a plugin may declare the version it was written for as ``api_version``
API_VERSION = 1

Aggregation = Literal["token", "mean", "max", "last"]


class PluginParams(BaseModel):
    """Base of every plugin's ``Params``: unknown keys are errors, values are validated strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_input_path(value: str, info: ValidationInfo) -> str:
    expanded = os.path.expanduser(value)
    base_dir = (info.context or {}).get("base_dir")
    if base_dir is None or os.path.isabs(expanded):
        return expanded
    return str(Path(base_dir) / expanded)


#: A file, directory or glob a plugin reads. In a run spec a relative path is resolved from the spec file's
#: directory (so a spec and its data travel together); elsewhere (``datasets preview --params``) from the working
#: directory. ``~`` is expanded.
InputPath = Annotated[str, BeforeValidator(lambda value: os.fspath(value) if isinstance(value, os.PathLike) else value),
                      AfterValidator(_resolve_input_path)]


class Plugin(ABC):
    """Common base: a ``Params`` model and a constructor that receives validated params."""

    Params: ClassVar[type[PluginParams]] = PluginParams

    def __init__(self, params: PluginParams | None = None) -> None:
        self.params = params if params is not None else self.Params()


# --------------------------------------------------------------------------------------------------------------
# Datasets


@dataclass(frozen=True)
class ProbeSites:
    """Where activations are read, one row per site, in unpadded token positions.

    A site covers tokens ``start <= position < end`` of sequence ``sequence`` and is reduced with ``aggregation``:
    ``token`` reads the single position ``start`` (``end == start + 1``); ``mean``, ``max`` and ``last`` reduce the
    span (skip-first-N is expressed by moving ``start``).
    """

    sequence: np.ndarray
    start: np.ndarray
    end: np.ndarray
    aggregation: Aggregation = "token"

    def __post_init__(self) -> None:
        for name in ("sequence", "start", "end"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        if not (len(self.sequence) == len(self.start) == len(self.end)):
            raise ValueError("ProbeSites arrays must have the same length")
        if len(self.start) and np.any(self.end <= self.start):
            raise ValueError("every probe site needs end > start")
        if self.aggregation == "token" and np.any(self.end != self.start + 1):
            raise ValueError("token sites must cover exactly one position (end == start + 1)")

    def __len__(self) -> int:
        return len(self.sequence)


@dataclass(frozen=True)
class Feature:
    """A named binary label over a subset of the dataset's probe sites."""

    name: str
    sites: np.ndarray  # indices into ProbingDataset.sites
    labels: np.ndarray  # bool, one per entry of ``sites``
    #: optional finer classes, one short name per entry of ``sites`` (e.g. the compound-word pools "XY", "XZ",
    #: "WY"): probing ignores them; ``probekit inspect by-class`` splits activations by them
    kinds: np.ndarray | None = None

    def __post_init__(self) -> None:
        sites, labels = np.asarray(self.sites), np.asarray(self.labels)
        if sites.ndim != 1 or labels.ndim != 1 or len(sites) != len(labels):
            raise ValueError(f"feature {self.name!r}: sites and labels must be 1-D arrays of one length "
                             f"(got shapes {sites.shape} and {labels.shape})")
        if self.kinds is not None:
            kinds = np.asarray(self.kinds, dtype=str)
            if kinds.shape != sites.shape:
                raise ValueError(f"feature {self.name!r}: kinds must name one class per site ({len(sites)}), got "
                                 f"shape {kinds.shape}")
            object.__setattr__(self, "kinds", kinds)
        if len(sites) and not np.issubdtype(sites.dtype, np.integer):
            raise ValueError(f"feature {self.name!r}: site indices must be integers, got {sites.dtype}")
        if labels.dtype != bool and (len(labels) and not np.isin(labels, (0, 1)).all()):
            raise ValueError(f"feature {self.name!r}: labels must be bool or 0/1, got values "
                             f"{np.unique(labels)[:5].tolist()}")
        object.__setattr__(self, "sites", sites.astype(np.int64))
        object.__setattr__(self, "labels", labels.astype(bool))


@dataclass(frozen=True)
class SkippedFeature:
    """A feature the dataset could not offer for this model, and why (e.g. constant for an uncased tokenizer)."""

    name: str
    reason: str


@dataclass
class ProbingDataset:
    """Tokenised sequences (unpadded; every token is real), probe sites and the binary features over them."""

    sequences: list[np.ndarray]
    sites: ProbeSites
    features: list[Feature]
    skipped: list[SkippedFeature] = field(default_factory=list)
    #: one id per site naming its source (document, entity, page): sites of one group never straddle the train/test
    #: split. None: every site is its own group (sites in identical sequences are still kept together by the core).
    groups: np.ndarray | None = None

    @property
    def activation_fingerprint(self) -> str:
        """Hash of what activations depend on: the tokens and the probe sites (not the labels)."""
        return self._digest(with_labels=False)

    @property
    def fingerprint(self) -> str:
        """Content hash of tokens, sites and labels: equal fingerprints mean identical probing data."""
        return self._digest(with_labels=True)

    def _digest(self, with_labels: bool) -> str:
        digest = hashlib.sha256()
        for ids in self.sequences:
            digest.update(np.asarray(ids, dtype=np.int64).tobytes())
            digest.update(b"|")
        for array in (self.sites.sequence, self.sites.start, self.sites.end):
            digest.update(array.tobytes())
        digest.update(self.sites.aggregation.encode())
        if with_labels:
            for feature in self.features:
                digest.update(feature.name.encode())
                digest.update(feature.sites.tobytes())
                digest.update(feature.labels.tobytes())
            if self.groups is not None:
                digest.update(b"groups")
                digest.update(np.asarray(self.groups, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]


def dataset_problems(dataset: object) -> list[str]:
    """What makes a dataset plugin's output unusable (checked by the core after every ``build``), or [] when it is
    sound: sequences of token ids, sites inside their sequences, at least one feature, unique feature names, feature
    sites that index the dataset's sites (each at most once)."""
    if not isinstance(dataset, ProbingDataset):
        return [f"build() returned {type(dataset).__name__}, not a ProbingDataset"]
    problems = []
    lengths = []
    for index, ids in enumerate(dataset.sequences):
        array = np.asarray(ids)
        if array.ndim != 1 or len(array) == 0 or not np.issubdtype(array.dtype, np.integer):
            problems.append(f"sequence {index} is not a non-empty 1-D array of token ids ({array.dtype}, "
                            f"shape {array.shape})")
        lengths.append(len(array) if array.ndim == 1 else 0)
    sites = dataset.sites
    if not isinstance(sites, ProbeSites):
        return [*problems, f"sites is {type(sites).__name__}, not ProbeSites"]
    if len(sites):
        outside = (sites.sequence < 0) | (sites.sequence >= len(lengths))
        if outside.any():
            problems.append(f"{int(outside.sum())} site(s) name a sequence outside 0-{len(lengths) - 1}, e.g. site "
                            f"{int(np.flatnonzero(outside)[0])} -> sequence {int(sites.sequence[outside][0])}")
        else:
            beyond = (sites.start < 0) | (sites.end > np.asarray(lengths)[sites.sequence])
            if beyond.any():
                first = int(np.flatnonzero(beyond)[0])
                problems.append(f"{int(beyond.sum())} site(s) lie outside their sequence, e.g. site {first}: "
                                f"positions {int(sites.start[first])}-{int(sites.end[first])} of sequence "
                                f"{int(sites.sequence[first])} (length {lengths[int(sites.sequence[first])]})")
    if dataset.groups is not None:
        groups = np.asarray(dataset.groups)
        if groups.shape != (len(sites),) or not np.issubdtype(groups.dtype, np.integer):
            problems.append(f"groups must be one integer per site ({len(sites)}), got {groups.dtype} {groups.shape}")
    if not dataset.features and not dataset.skipped:
        problems.append("it built no feature (and reported none as skipped)")
    names = [feature.name for feature in dataset.features] + [skipped.name for skipped in dataset.skipped]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"feature names must be unique; repeated: {', '.join(map(repr, repeated))}")
    for feature in dataset.features:
        if not isinstance(feature, Feature):
            problems.append(f"features holds a {type(feature).__name__}, not a Feature")
            continue
        if not isinstance(feature.name, str) or not feature.name:
            problems.append(f"a feature has the name {feature.name!r}; names must be non-empty strings")
        if len(feature.sites) and (feature.sites.min() < 0 or feature.sites.max() >= len(sites)):
            problems.append(f"feature {feature.name!r} indexes site {int(feature.sites.max())}, but the dataset has "
                            f"{len(sites)} sites (0-{len(sites) - 1})")
        elif len(np.unique(feature.sites)) != len(feature.sites):
            problems.append(f"feature {feature.name!r} lists a site more than once (it could land in both train "
                            "and test)")
    return problems


class DatasetPlugin(Plugin):
    """Builds a :class:`ProbingDataset` on the model's own tokens."""

    @abstractmethod
    def build(self, tokenizer: Any) -> ProbingDataset:
        """Tokenise the raw material with ``tokenizer`` (a Hugging Face fast tokenizer) and label probe sites."""


# --------------------------------------------------------------------------------------------------------------
# Model adapters


@dataclass(frozen=True)
class TokenBatch:
    """A padded batch: ``input_ids`` and ``attention_mask`` of shape [batch, length]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


@dataclass(frozen=True)
class BatchSites:
    """Probe sites of one batch in padded coordinates: batch ``row``, span ``start <= position < end``."""

    row: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    aggregation: Aggregation


@dataclass(frozen=True)
class NeuronWeights:
    """One layer's MLP weights, neuron-major whatever the model's own storage.

    ``W_in[n]`` ([d_mlp, d_model]) is the direction neuron ``n`` reads from the residual stream and ``b_in[n]`` its
    bias; ``W_out[:, n]`` ([d_model, d_mlp]) is what it writes back, so ``W_U @ W_out[:, n]`` is its direct effect on
    the logits. Gated MLPs (Llama-style) also give ``W_gate`` ([d_mlp, d_model]); their ``W_in`` is the up
    projection and the neuron is ``act(W_gate[n] . x) * (W_in[n] . x)``.
    """

    W_in: np.ndarray
    b_in: np.ndarray | None
    W_out: np.ndarray
    W_gate: np.ndarray | None = None


@dataclass(frozen=True)
class FinalNorm:
    """The normalisation between the last block and the unembedding: its elementwise ``scale`` [d_model] and
    whether it subtracts the mean first (``centered``: LayerNorm yes, RMSNorm no). Its data-dependent division by
    the norm is positive and the same for every vocabulary token, so it changes no ranking of direct effects."""

    scale: np.ndarray
    centered: bool


@dataclass(frozen=True)
class AblationResult:
    """Per-sequence mean next-token loss (nats) without and with the ablation."""

    loss_clean: np.ndarray
    loss_ablated: np.ndarray


class ModelAdapter(Plugin):
    """A language model whose MLP neurons can be read: tokenizer, sizes and activations at probe sites.

    Constructing an adapter must be cheap (tokenizer and config only); weights are loaded on first use, so a run
    whose activations are all cached never loads them.
    """

    #: Hugging Face fast tokenizer used by dataset plugins
    tokenizer: Any
    #: number of transformer blocks, and neurons per block (d_mlp)
    n_layers: int
    d_mlp: int
    #: how the extraction engine pads batches
    padding_side: Literal["left", "right"] = "right"

    @property
    @abstractmethod
    def identity(self) -> str:
        """Identifies the weights exactly (model id, revision, dtype): part of every cache key and result row."""

    @abstractmethod
    def activations(self, batch: TokenBatch, layers: Sequence[int], sites: BatchSites) -> dict[int, np.ndarray]:
        """Post-nonlinearity MLP activations reduced to ``sites``: ``{layer: float32 array [n_sites, d_mlp]}``."""

    # Case-study hooks; adapters that cannot offer them keep these refusals.

    def ablate(
        self, neurons: Sequence[tuple[int, int]], batch: TokenBatch, mode: Literal["zero", "mean"] = "zero",
        *, means: Sequence[float] | None = None,
    ) -> AblationResult:
        """Language-model loss per sequence with the (layer, neuron) pairs fixed to 0 or to a mean: ``means`` (one
        per pair, e.g. over a corpus), else their mean over the batch's real tokens."""
        raise NotImplementedError(f"{type(self).__name__} does not support ablation")

    def weights(self, layer: int) -> NeuronWeights:
        """MLP weights of ``layer`` (see :class:`NeuronWeights` for the orientation)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose weights")

    def unembedding(self) -> np.ndarray:
        """The unembedding ``W_U`` [vocab, d_model]: logits = W_U @ final residual stream."""
        raise NotImplementedError(f"{type(self).__name__} does not expose an unembedding")

    def final_norm(self) -> FinalNorm | None:
        """The normalisation applied before the unembedding, or None when the model has none."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its final normalisation")


# --------------------------------------------------------------------------------------------------------------
# Selectors


@dataclass(frozen=True)
class Selection:
    """The neurons a selector chose for one k (column indices of the matrix it was given)."""

    neurons: np.ndarray
    scores: np.ndarray | None = None
    #: JSON-serialisable extras, e.g. a solver certificate (status, bound, gap)
    details: dict[str, Any] = field(default_factory=dict)


class Selector(Plugin):
    """Chooses k neurons from training data only; the core retrains and evaluates the probe.

    ``X_train`` holds the candidate neurons only: the core first keeps the spec's ``prefilter`` neurons with the
    largest class-mean difference on the training split (the paper's protocol), and maps the returned column
    indices back to neuron ids. ``y_train`` is boolean. Selectors never see the test split.
    """

    @abstractmethod
    def select(self, X_train: np.ndarray, y_train: np.ndarray, ks: Sequence[int]) -> dict[int, Selection]:
        """Return a :class:`Selection` of exactly k distinct columns of ``X_train`` for every k in ``ks``."""

    def ks_problem(self, ks: Sequence[int], n_columns: int) -> str | None:
        """Why some k in ``ks`` cannot be chosen from ``n_columns`` candidate columns, or None when all can.

        The core asks when the spec is validated, with the spec's prefilter as ``n_columns``, so the mistake is
        reported before any work is done. Selectors that choose from a smaller set of their own (e.g. an optimal
        solver over its top candidates) override this; the message should name the parameter to change."""
        return None


def plugin_summary(cls: type) -> str:
    """First line of a plugin class's docstring."""
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


# --------------------------------------------------------------------------------------------------------------
# Executors


@dataclass(frozen=True)
class Job:
    """One unit of work for an executor: run ``probekit.units.run_unit(payload)`` somewhere, which returns a JSON
    text. ``kind`` says what resources it needs: an ``extraction`` job loads a model (a GPU, where there is one); a
    ``probe`` job only reads the activation cache (CPU). ``name`` is a short, file-safe label (e.g. for logs)."""

    id: str
    kind: Literal["extraction", "probe"]
    name: str
    payload: str


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: its JSON ``result``, or the ``error`` it failed with (and where its ``log`` is, if any)."""

    job: Job
    result: str | None = None
    error: str | None = None
    log: str | None = None


@dataclass(frozen=True)
class ExecutionContext:
    """What an executor may need to know before it starts: the run directory (for its own logs), the activation
    cache, and whether the spec gave these paths as written (cluster executors need paths every node sees)."""

    run_dir: Path
    cache_dir: Path | None
    paths_absolute: bool

    def log_path(self, job: Job) -> Path:
        """Where a job's log goes when the executor keeps none of its own: ``logs/<job name>.log`` in the run
        directory (created)."""
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs / f"{job.name}.log"


def failure(job: Job, error: BaseException, context: ExecutionContext | None) -> JobOutcome:
    """The outcome of a job that raised ``error``: its one-line message, and its traceback written to the job's log
    (when there is a run directory to write it to)."""
    log = None
    if context is not None:
        path = context.log_path(job)
        path.write_text("".join(traceback.format_exception(error)))
        log = str(path)
    lines = [line for line in str(error).splitlines() if line.strip()]
    # a worker's error may carry its remote traceback in the message (Ray): its last line names the exception
    message = lines[-1] if len(lines) > 1 else f"{type(error).__name__}: {lines[0] if lines else ''}"
    return JobOutcome(job, error=message, log=log)


class Executor(Plugin):
    """Runs jobs (units of a sweep) where the compute is: in this process, in worker processes, on a cluster.

    An executor never changes results: only where and when jobs run. Jobs are independent and pass data by path
    (the run directory and the activation cache), so every worker must see those paths.
    """

    @property
    def parallelism(self) -> int:
        """How many jobs run at once (the driver cuts probe units so that each worker gets about two)."""
        return 1

    def check(self, context: ExecutionContext) -> None:
        """Raise :class:`~probekit.errors.RunError` naming the fix when this executor cannot run here (a missing
        command or package, an unreachable cluster, paths that workers would not see). Called before any work."""

    @abstractmethod
    def run(self, jobs: Sequence[Job]) -> Iterator[JobOutcome]:
        """Run every job (in any order, as parallel as the executor goes) and yield each one's outcome as it ends.
        A job that raises yields an outcome with its ``error``; the core decides about retries."""

    def cancel(self) -> None:
        """Stop jobs still running or queued (the user interrupted the run); called from the driver's thread."""

    def close(self) -> None:
        """Release what the executor started (worker processes, a local cluster)."""
