"""``probekit inspect``: the paper's case-study analyses of neurons, one command each (see probekit.inspection).

Every command takes neuron ids as the results table writes them (``L0.N787``; several for a k-sparse probe), a model
(``--model PLUGIN --model-params ...`` or a run's, ``--from-run DIR``) and, where it reads text, a corpus (a dataset
plugin, a run's dataset, or ``--text FILES``). It prints a table; ``--output DIR`` also saves the numbers (Parquet,
JSON) and a figure (PNG, SVG).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from probekit.errors import ProbekitError
from probekit.inspection.neurons import NeuronId, check_neurons, parse_neurons
from probekit.inspection.output import Inspection, rich_table
from probekit.inspection.subject import Subject, TextCorpus, open_subject
from probekit.progress import progress_display
from probekit.spec import parse_int_list
from probekit.terminal import console, show, user_errors, warn

inspect_app = typer.Typer(help="Case studies of neurons (the paper's section 5): max-activating examples, "
                          "activations by class, per-token activation, logit effects, ablation, weight statistics.",
                          no_args_is_help=True)

Neurons = Annotated[list[str], typer.Argument(help="neuron ids as in the results, e.g. L0.N787 (several: L1.N5 L1.N9)")]
Model = Annotated[Optional[str], typer.Option(
    "--model", help="model plugin (see list-plugins); with --from-run, the label of one of the run's models")]
ModelParams = Annotated[str, typer.Option("--model-params", help="the model plugin's params as YAML or JSON")]
FromRun = Annotated[Optional[Path], typer.Option(
    "--from-run", help="a run directory: use its spec's model and dataset entries and its activation cache")]
Dataset = Annotated[Optional[str], typer.Option(
    "--dataset", help="dataset plugin giving the corpus and features; with --from-run, the label of a run's dataset")]
DatasetParams = Annotated[str, typer.Option("--dataset-params", help="the dataset plugin's params as YAML or JSON")]
Text = Annotated[Optional[str], typer.Option(
    "--text", help="a corpus instead of the dataset: plain-text files (a file, a directory or a glob) or a text "
    "source as YAML, e.g. '{kind: stdlib}'")]
SequenceLength = Annotated[int, typer.Option("--sequence-length", min=2, help="tokens per --text window")]
MaxSequences = Annotated[int, typer.Option("--max-sequences", min=1, help="--text windows read at most")]
Cache = Annotated[Optional[Path], typer.Option(
    "--cache", help="activation cache to read a dataset's site activations from (default: the run's)")]
BatchTokens = Annotated[int, typer.Option("--batch-tokens", min=1, help="tokens per forward pass (padded)")]
Output = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="save the numbers (Parquet, JSON) and the figure (PNG, SVG) in this directory")]
Feature = Annotated[Optional[str], typer.Option("--feature", help="a feature of the dataset")]


@contextmanager
def _inspection(output: Path | None) -> Iterator[None]:
    """User and environment errors as one message and exit code 2; an --output that cannot be written stops the
    command before the analysis runs."""
    with user_errors(f"the inspection output {output}" if output else "the inspection"):
        if output is not None:
            _check_output(output)
        yield


def _check_output(output: Path) -> None:
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ProbekitError(f"--output {output}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "a read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else "permission denied"
        raise ProbekitError(f"--output {output}: cannot write in {existing} ({why}); choose a writable location")


def _subject(model: str | None, model_params: str, from_run: Path | None, dataset: str | None, dataset_params: str,
             text: str | None, sequence_length: int, max_sequences: int, cache: Path | None,
             batch_tokens: int) -> Subject:
    corpus = TextCorpus(text, sequence_length, max_sequences) if text else None
    return open_subject(model=model, model_params=model_params, dataset=dataset, dataset_params=dataset_params,
                        from_run=from_run, text=corpus, cache=cache, batch_tokens=batch_tokens)


def _neurons(texts: list[str], subject: Subject) -> list[NeuronId]:
    neurons = parse_neurons(texts)
    adapter = subject.adapter
    check_neurons(neurons, adapter.n_layers, adapter.d_mlp, subject.model_label)
    return neurons


def _with_progress(description: str, total: int, compute: Callable[[Callable[[int], None]], Inspection]) -> Inspection:
    with progress_display() as progress:
        task = progress.add_task(description, total=total)
        result = compute(lambda n: progress.advance(task, n))
        progress.remove_task(task)
    return result


def _finish(result: Inspection, subject: Subject | None, output: Path | None, title: str) -> None:
    if subject is not None:
        result.description = {"model": subject.model_label, "model_identity": subject.adapter.identity,
                              "corpus": subject.corpus_name if subject.dataset_ref or subject.text else None,
                              **result.description}
    first = next(iter(result.tables.values()))
    show(rich_table(first, title))
    for note in result.notes:
        console.print(note, markup=False, style="dim")
    if output is not None:
        written = result.write(output)
        console.print(f"saved {', '.join(str(path) for path in written)}", markup=False)


def _band(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.replace(",", "-").split("-"))
    except ValueError:
        raise ProbekitError(f"--band {text}: give two quantiles as LOW-HIGH, e.g. 0.9-0.99") from None
    if not 0 <= low < high <= 1:  # checked before the corpus is read
        raise ProbekitError(f"--band {text}: give two quantiles 0 <= low < high <= 1, e.g. 0.9-0.99")
    return low, high


@inspect_app.command("max-activating")
def max_activating_command(
    neurons: Neurons, model: Model = None, model_params: ModelParams = "{}", from_run: FromRun = None,
    dataset: Dataset = None, dataset_params: DatasetParams = "{}", text: Text = None,
    sequence_length: SequenceLength = 128, max_sequences: MaxSequences = 1000, cache: Cache = None,
    batch_tokens: BatchTokens = 4096, output: Output = None,
    top: Annotated[int, typer.Option("--top", min=1, help="top examples per neuron")] = 20,
    band: Annotated[str, typer.Option("--band", help="quantile band LOW-HIGH of the random examples")] = "0.9-0.99",
    band_examples: Annotated[int, typer.Option("--band-examples", min=0, help="random examples from the band")] = 10,
    context: Annotated[int, typer.Option("--context", min=0, help="tokens shown on each side")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="seed of the token sample and the band's draw")] = 0,
) -> None:
    """The top-N activating tokens of each neuron over a corpus, in context, and N random ones from a quantile band."""
    from probekit.inspection.max_activating import max_activating

    with _inspection(output):
        low_high = _band(band)
        subject = _subject(model, model_params, from_run, dataset, dataset_params, text, sequence_length,
                           max_sequences, cache, batch_tokens)
        chosen = _neurons(neurons, subject)
        sequences = subject.sequences()
        result = _with_progress("read tokens", sum(len(s) for s in sequences), lambda advance: max_activating(
            subject.adapter, sequences, chosen, top, low_high, band_examples, context, seed, batch_tokens, advance))
        _finish(result, subject, output, f"max-activating tokens of {', '.join(map(str, chosen))}")


@inspect_app.command("by-class")
def by_class_command(
    neurons: Neurons, model: Model = None, model_params: ModelParams = "{}", from_run: FromRun = None,
    dataset: Dataset = None, dataset_params: DatasetParams = "{}", cache: Cache = None,
    batch_tokens: BatchTokens = 4096, output: Output = None, feature: Feature = None,
    other_tokens: Annotated[bool, typer.Option(
        "--other-tokens", help="also every other token of the feature's sequences (token-level features)")] = False,
    bins: Annotated[int, typer.Option("--bins", min=2, help="histogram bins")] = 50,
) -> None:
    """A feature's activations by class (and by the dataset's kinds), per neuron and summed, with the best single
    threshold's precision and recall."""
    from probekit.inspection.by_class import by_class

    with _inspection(output):
        subject = _subject(model, model_params, from_run, dataset, dataset_params, None, 128, 1, cache, batch_tokens)
        chosen = _neurons(neurons, subject)
        chosen_feature = subject.feature(feature)
        if subject.missing_cache is not None:
            warn(f"no activation cache at {subject.missing_cache} (a relative cache is found from the directory the "
                 "run was started in; or pass --cache DIR): the activations are extracted again")
        dataset_built = subject.dataset
        result = _with_progress("read sites", len(dataset_built.sites), lambda advance: by_class(
            subject.adapter, dataset_built, chosen_feature, chosen, subject.cache, other_tokens, bins, batch_tokens,
            advance))
        _finish(result, subject, output, f"{', '.join(map(str, chosen))} on '{chosen_feature.name}'")
        show(rich_table(result.tables["thresholds"], "best single threshold"))


@inspect_app.command("vocab")
def vocab_command(
    neurons: Neurons, model: Model = None, model_params: ModelParams = "{}", from_run: FromRun = None,
    dataset: Dataset = None, dataset_params: DatasetParams = "{}", text: Text = None,
    sequence_length: SequenceLength = 128, max_sequences: MaxSequences = 1000,
    batch_tokens: BatchTokens = 4096, output: Output = None,
    min_count: Annotated[int, typer.Option("--min-count", min=1, help="rank only tokens seen this often")] = 5,
    top: Annotated[int, typer.Option("--top", min=1, help="top and bottom tokens per neuron")] = 20,
    split_by: Annotated[Optional[str], typer.Option(
        "--split-by", help="a feature of the dataset: each token also counted by the label of the text around it")]
    = None,
) -> None:
    """Mean, max and count of each neuron's activation per vocabulary token over a corpus."""
    from probekit.inspection.vocab import vocab

    with _inspection(output):
        subject = _subject(model, model_params, from_run, dataset, dataset_params, text, sequence_length,
                           max_sequences, None, batch_tokens)
        chosen = _neurons(neurons, subject)
        split = None
        if split_by is not None:
            if text is not None:
                raise ProbekitError("--split-by labels the dataset's own text; it cannot be combined with --text")
            split = (subject.dataset, subject.feature(split_by))
        sequences = subject.sequences()
        result = _with_progress("read tokens", sum(len(s) for s in sequences), lambda advance: vocab(
            subject.adapter, sequences, chosen, min_count, top, split, batch_tokens, advance))
        _finish(result, subject, output, f"activation per token of {', '.join(map(str, chosen))}")
        if split is not None:
            if result.tables["split"].num_rows:
                show(rich_table(result.tables["split"], f"the same token by the label of '{split_by}'", limit=20))
            else:
                console.print(f"no token occurs --min-count {min_count} times both in positive and in negative "
                              f"spans of '{split_by}'", markup=False, style="dim")


@inspect_app.command("logits")
def logits_command(
    neurons: Neurons, model: Model = None, model_params: ModelParams = "{}", from_run: FromRun = None,
    output: Output = None,
    top: Annotated[int, typer.Option("--top", min=1, help="boosted and suppressed tokens per neuron")] = 20,
) -> None:
    """Each neuron's direct effect on the output logits, W_U @ W_out[:, n] through the final norm's scale."""
    from probekit.inspection.logits import logits

    with _inspection(output):
        subject = _subject(model, model_params, from_run, None, "{}", None, 128, 1, None, 4096)
        chosen = _neurons(neurons, subject)
        result = logits(subject.adapter, chosen, top)
        _finish(result, subject, output, f"direct logit effect of {', '.join(map(str, chosen))}")


@inspect_app.command("ablate")
def ablate_command(
    neurons: Neurons, model: Model = None, model_params: ModelParams = "{}", from_run: FromRun = None,
    dataset: Dataset = None, dataset_params: DatasetParams = "{}",
    batch_tokens: BatchTokens = 4096, output: Output = None, feature: Feature = None,
    mode: Annotated[str, typer.Option("--mode", help="zero, or mean (the neuron's mean over the corpus)")] = "zero",
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=10, help="bootstrap draws of the interval")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="bootstrap seed")] = 0,
) -> None:
    """Language-model loss with the neurons ablated against the clean model, per class of sequence: without
    --feature each sequence's class is the dataset's feature positive in it (e.g. its language)."""
    from probekit.inspection.ablation import ablation, require_language_model

    with _inspection(output):
        if mode not in ("zero", "mean"):
            raise ProbekitError(f"--mode {mode}: choose zero or mean")
        ablation_mode: Literal["zero", "mean"] = "zero" if mode == "zero" else "mean"
        subject = _subject(model, model_params, from_run, dataset, dataset_params, None, 128, 1, None, batch_tokens)
        chosen = _neurons(neurons, subject)
        require_language_model(subject.adapter)  # before the dataset is built
        chosen_feature = subject.feature(feature) if feature is not None else None
        dataset_built = subject.dataset
        result = _with_progress("ablate sequences", len(dataset_built.sequences), lambda advance: ablation(
            subject.adapter, dataset_built, chosen, ablation_mode, chosen_feature, bootstrap, seed, batch_tokens,
            advance))
        _finish(result, subject, output, f"{mode}-ablating {', '.join(map(str, chosen))}")


@inspect_app.command("weights")
def weights_command(
    neurons: Annotated[Optional[list[str]], typer.Argument(help="neuron ids to place in their layer's distribution")]
    = None,
    model: Model = None, model_params: ModelParams = "{}", from_run: FromRun = None, output: Output = None,
    layers: Annotated[Optional[str], typer.Option(
        "--layers", help="layers to describe: all, 0-3, or 1,4 (default: the neurons' layers, else all)")] = None,
) -> None:
    """Input weight norm, input bias, their product (the superposition fingerprint) and output norm of every neuron
    of some layers, with the inspected neurons' percentiles."""
    from probekit.inspection.weights import weights

    with _inspection(output):
        subject = _subject(model, model_params, from_run, None, "{}", None, 128, 1, None, 4096)
        adapter = subject.adapter
        chosen = _neurons(neurons, subject) if neurons else []
        if layers is None or layers == "all":
            chosen_layers = sorted({n.layer for n in chosen}) if chosen and layers is None else list(
                range(adapter.n_layers))
        else:
            try:
                chosen_layers = parse_int_list(layers.split(","), adapter.n_layers - 1,
                                               f"the last layer of '{subject.model_label}' ({adapter.n_layers - 1})")
            except ValueError as error:
                raise ProbekitError(f"--layers {layers}: {error}") from None
        result = weights(adapter, chosen_layers, chosen)
        _finish(result, subject, output, "weight statistics")
        if chosen:
            show(rich_table(result.tables["layers"], "per layer", limit=4 * len(result.description["layers"])))
