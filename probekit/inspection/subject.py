"""What an inspection looks at: a model adapter, and a corpus to stream over (a dataset plugin's sequences, or text
files cut into windows), taken from command-line options or from a finished run's spec (``--from-run``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import TypeAdapter, ValidationError

from probekit.cache import ActivationCache
from probekit.contracts import Feature, ModelAdapter, ProbingDataset
from probekit.datasets.alignment import tokenize_lazily
from probekit.datasets.files import read_text, resolve_files
from probekit.datasets.sources import TextSource, read_documents
from probekit.datasets.windows import content_length, cut_windows, special_frame
from probekit.errors import ProbekitError, guarded
from probekit.registry import PluginRegistry
from probekit.results import RunDirectory
from probekit.spec import PluginRef, ResolvedPlugin, parse_params, resolve_plugin, validate_spec_text
from probekit.units import check_dataset


@dataclass(frozen=True)
class TextCorpus:
    """Plain-text files (a file, a directory or a glob) cut into windows of ``sequence_length`` tokens."""

    pattern: str
    sequence_length: int = 128
    max_sequences: int = 1000


@dataclass
class Subject:
    """A model and where its corpus comes from; the model and the dataset are built on first use."""

    model_label: str
    model_ref: ResolvedPlugin
    dataset_ref: ResolvedPlugin | None = None
    text: TextCorpus | None = None
    cache: ActivationCache | None = None
    batch_tokens: int = 4096
    #: datasets of the run a ``--from-run`` subject could have used, for the message when none was chosen
    run_datasets: list[str] = field(default_factory=list)
    #: the run's activation cache when it is not where its spec says (relative to the working directory)
    missing_cache: Path | None = None

    @cached_property
    def adapter(self) -> ModelAdapter:
        return guarded(self.model_ref.instantiate, f"model '{self.model_label}' failed to load")

    @cached_property
    def dataset(self) -> ProbingDataset:
        """The dataset plugin's dataset on the model's tokenizer (an error when the subject has none)."""
        if self.dataset_ref is None:
            if self.run_datasets:
                raise ProbekitError(f"the run has several datasets ({', '.join(self.run_datasets)}); choose one with "
                                    "--dataset")
            raise ProbekitError("this analysis needs a dataset: --dataset NAME (a dataset plugin, with "
                                "--dataset-params) or --from-run DIR")
        ref = self.dataset_ref
        dataset = guarded(lambda: ref.instantiate().build(self.adapter.tokenizer),
                          f"dataset '{ref.label}' failed to build for model '{self.model_label}'")
        check_dataset(dataset, ref, self.model_label)
        return dataset

    @property
    def corpus_name(self) -> str:
        if self.text is not None:
            return self.text.pattern
        return self.dataset_ref.label if self.dataset_ref is not None else "?"

    def sequences(self) -> list[np.ndarray]:
        """The corpus: the text files' windows when ``--text`` was given, else the dataset's sequences."""
        if self.text is None:
            return self.dataset.sequences
        return text_sequences(self.adapter.tokenizer, self.text)

    def feature(self, name: str | None) -> Feature:
        """The dataset's feature ``name`` (the only one when None); an unknown name lists the known ones."""
        dataset = self.dataset
        known = [feature.name for feature in dataset.features]
        if name is None:
            if len(known) == 1:
                return dataset.features[0]
            raise ProbekitError(f"choose a feature with --feature; dataset '{self.corpus_name}' has {', '.join(known)}")
        for feature in dataset.features:
            if feature.name == name:
                return feature
        skipped = {s.name: s.reason for s in dataset.skipped}
        if name in skipped:
            raise ProbekitError(f"feature '{name}' of dataset '{self.corpus_name}' was skipped for this model: "
                                f"{skipped[name]}")
        raise ProbekitError(f"dataset '{self.corpus_name}' has no feature '{name}'; its features: {', '.join(known)}")


def text_sequences(tokenizer: object, corpus: TextCorpus) -> list[np.ndarray]:
    """Windows of the corpus's tokens, the model's special tokens around each, in reading order. The corpus is files
    (a file, a directory or a glob), or any text source of the datasets given as a mapping, e.g. ``{kind: stdlib}``
    or ``{kind: jsonl, path: corpus.jsonl, text_field: text}`` (see docs/datasets.md)."""
    frame = special_frame(tokenizer)
    content = content_length(tokenizer, frame, corpus.sequence_length)
    if corpus.pattern.lstrip().startswith("{"):
        try:
            source = TypeAdapter(TextSource).validate_python(parse_params("--text", corpus.pattern))
        except ValidationError as error:
            problems = "; ".join(": ".join(filter(None, (".".join(map(str, e["loc"])), e["msg"])))
                                 for e in error.errors())
            raise ProbekitError(f"--text {corpus.pattern}: not a text source ({problems})") from None
        texts: Iterator[str] = read_documents(source, seed=0)
    else:
        files = resolve_files(corpus.pattern, what="--text")
        texts = (read_text(path, fallback="latin-1") for path in files)
    documents = tokenize_lazily(tokenizer, texts)
    windows = cut_windows(documents, content, limit=corpus.max_sequences)
    sequences = [window.input_ids(frame) for window in windows]
    if not sequences:
        raise ProbekitError(f"--text {corpus.pattern}: it holds no text")
    return sequences


def open_subject(
    *, model: str | None, model_params: str, dataset: str | None, dataset_params: str, from_run: Path | None,
    text: TextCorpus | None, cache: Path | None, batch_tokens: int,
) -> Subject:
    """The subject the options describe: ``--from-run`` takes the run's model and dataset entries (chosen by label
    with ``--model`` / ``--dataset`` when the run has several) and its activation cache; otherwise ``--model`` names
    a model plugin and ``--dataset`` a dataset plugin, each with its params."""
    registry = PluginRegistry()
    if from_run is None:
        if model is None:
            raise ProbekitError("name the model: --model PLUGIN (e.g. minilm, pythia; see `probekit list-plugins`) "
                                "or --from-run DIR")
        model_ref = resolve_plugin(registry, "models", PluginRef(plugin=model,
                                   params=parse_params("--model-params", model_params)), "--model-params")
        dataset_ref = None
        if dataset is not None:
            dataset_ref = resolve_plugin(registry, "datasets", PluginRef(plugin=dataset, params=parse_params(
                "--dataset-params", dataset_params)), "--dataset-params")
        return Subject(model, model_ref, dataset_ref, text, ActivationCache(cache) if cache else None, batch_tokens)

    for option, value in (("--model-params", model_params), ("--dataset-params", dataset_params)):
        if value.strip() not in ("", "{}"):
            raise ProbekitError(f"{option} cannot be combined with --from-run (the run's spec gives the params)")
    directory = RunDirectory(from_run)
    if not directory.path.is_dir():
        raise ProbekitError(f"--from-run {from_run}: no such directory")
    manifest = directory.read_manifest()
    if manifest is None:
        raise ProbekitError(f"--from-run {from_run}: not a probekit run directory (no run.json)")
    validated = validate_spec_text(json.dumps(manifest.spec), str(directory.manifest_path), registry)
    model_ref = _choose("model", validated.models, model, from_run)
    datasets = validated.datasets
    dataset_ref = _choose("dataset", datasets, dataset, from_run) if dataset or len(datasets) == 1 else None
    spec_cache = validated.spec.cache
    chosen_cache = cache or (Path(spec_cache) if spec_cache else None)
    found = chosen_cache is not None and chosen_cache.is_dir()
    return Subject(model_ref.label, model_ref, dataset_ref, text, ActivationCache(chosen_cache) if found else None,
                   batch_tokens, run_datasets=[d.label for d in datasets] if dataset_ref is None else [],
                   missing_cache=None if found else chosen_cache)


def _choose(kind: str, refs: list[ResolvedPlugin], label: str | None, run: Path) -> ResolvedPlugin:
    labels = [ref.label for ref in refs]
    if label is None:
        if len(refs) == 1:
            return refs[0]
        raise ProbekitError(f"the run {run} has several {kind}s ({', '.join(labels)}); choose one with --{kind}")
    for ref in refs:
        if ref.label == label:
            return ref
    raise ProbekitError(f"the run {run} has no {kind} '{label}'; its {kind}s: {', '.join(labels)}")
