"""A model adapter for tests: no weights, no network, no nnsight; an in-memory byte-level BPE tokenizer and
activations given by a closed form (:meth:`FakeModel.neuron_values`), so tests of the core (sweep, cache, results,
report) load no model and can compute the expected activations independently of the extraction engine. Public
through :mod:`probekit.testing`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from probekit.contracts import BatchSites, ModelAdapter, PluginParams, TokenBatch
from probekit.sites import reduce_to_sites

#: fixed training text of the fake tokenizer: prose, code, numbers, capitals and a few non-ASCII words
_TOKENIZER_TEXT = """\
The quick brown fox jumps over the lazy dog. A second line follows the first one, and then a third.
In 1984 the museum opened 12 new rooms; in 2023 it had 365 visitors a day, and tickets cost $15.50 each.
Alice met Bob in Paris on Monday. On Friday, Carol flew from Berlin to Rome with Dave and Eve.
NASA, the BBC and the UN published reports about climate, energy and water in 2019, 2020 and 2021.
def add(a, b):
    return a + b  # returns the sum of the two numbers
class Stack:
    def __init__(self):
        self.items = []
    def push(self, item):
        self.items.append(item)
for i in range(10):
    if i % 2 == 0:
        print(i, "is even")
import os, sys, json
value = json.loads(text)["value"] if text else None
Return the number of items in the list. Raise ValueError if the list is empty or the index is out of range.
This module provides functions for reading and writing files, parsing arguments and formatting strings.
Der Bär läuft über die Straße. El niño comió una manzana. Les élèves sont à l'école. Smörgåsbord, café, naïve.
Version 3.12.1 was released on 2024-10-07 at 09:30; see https://example.org/docs/index.html for details.
He said: "Don't stop!" -- but she didn't listen... (Really?) [Yes] {maybe} <tag> @user #hash 100% & more.
"""

#: common words of English prose and of Python docstrings, so that frequent words are single tokens, as in a real
#: model's vocabulary (trained lower-case, capitalised and upper-case)
_TOKENIZER_WORDS = """\
the a an to is of and for in be if or that it with as not file by are this from we will can on all name list value
return which data class used module default use line method set so no when only should have but may one at any
number other function python message has character command given argument type then new returns path first was
called text using error directory values current case get files exception true into you read specified do bytes
thread up code arguments result its instance address option there methods same end context like than objects test
call also names server time loop more encoding output returned after non they tuple source options mode before empty
need just format either separator socket raise element each add some event two check does strings copy been here
filename base lines optional process where order integer half already start passed dict prefix user attribute package
make input see because support next handler single write key version dictionary handle always otherwise note codec
open without log parameter run attributes raised left characters available them request containing create last out
defined instead buffer level right build until connection most found size implementation want letter since state
example encoded parser zero library between specific close length import these compiler try both flag needed find
long flags their match created response such errors being even whether charset args interface classes information
protocol following about through standard possible modules root member defaults functions would local child sequence
parse stream object string self none false what how why who were has had did said says year years day days people
world state work part place house water words word number numbers point small large great little old good right
def else elif while lambda yield pass break continue except finally global nonlocal assert del async await print len
"""


def _training_text() -> str:
    words = _TOKENIZER_WORDS.split()
    variants = [" ".join(words), " ".join(w.capitalize() for w in words), " ".join(w.upper() for w in words[::5])]
    numbers = [str(n) for n in [*range(100), *range(1900, 2031), 256, 512, 1024, 4096, 65536]]
    return "\n".join([_TOKENIZER_TEXT, *variants, " ".join(numbers), ",".join(numbers)])


_SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")


@functools.lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=list(_SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([_training_text()] * 2, trainer)
    bos = _SPECIAL_TOKENS.index("<bos>")
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),  # a token's span keeps its leading space, as in GPT-2 / Pythia
        processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)]),
    ])
    return tokenizer.to_str()


def fake_tokenizer() -> Any:
    """A small byte-level BPE tokenizer (GPT-2 style, prepends ``<bos>``, pads with ``<pad>``), built in memory.

    A :class:`transformers.PreTrainedTokenizerFast` with character offsets and special-token masks, like a real
    model's; trained once per process on a fixed text (a few milliseconds), a fresh wrapper on every call.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json()), pad_token="<pad>",
                                   bos_token="<bos>", eos_token="<eos>", model_max_length=4096)


#: token classes the fake model has a detector neuron for in every layer: name -> predicate on the token's text
FAKE_DETECTORS: dict[str, Callable[[str], bool]] = {
    "digit": lambda s: any(c.isdigit() for c in s),
    "capital": lambda s: s.lstrip()[:1].isupper(),
    "leading_space": lambda s: s[:1].isspace(),
    "punctuation": lambda s: s.strip() != "" and not any(c.isalnum() for c in s),
}


@functools.lru_cache(maxsize=1)
def _token_classes() -> tuple[str, np.ndarray]:
    """(hash of the vocabulary, bool [n_detectors, vocab]: which tokens each detector fires for)."""
    tokenizer = fake_tokenizer()
    size = len(tokenizer)
    texts = [tokenizer.decode([i]) for i in range(size)]
    special = set(tokenizer.all_special_ids)
    classes = np.array([[i not in special and test(texts[i]) for i in range(size)] for test in FAKE_DETECTORS.values()])
    vocabulary = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(vocabulary.encode()).hexdigest()[:12], classes


class FakeModelParams(PluginParams):
    n_layers: int = Field(2, ge=1, le=128, description="number of layers")
    d_mlp: int = Field(64, ge=4, le=1 << 16, description="neurons per layer")
    seed: int = Field(0, description="seed of the random tables that define the activations")
    padding_side: Literal["right", "left"] = Field("right", description="how the core pads batches for it")


class FakeModel(ModelAdapter):
    """An in-memory fake language model for tests: closed-form neurons, no weights, no network, no nnsight.

    Tokenizer: :func:`fake_tokenizer`, a small byte-level BPE that prepends ``<bos>``. Activations (the closed form,
    :meth:`neuron_values`): for layer ``l`` the generator ``numpy.random.default_rng([seed, l])`` draws a token table
    ``T[l]`` [vocab, d_mlp] ~ N(0, 1) and a context table ``C[l]`` [vocab + 1, d_mlp] ~ N(0, 0.5^2), then neuron

        a[l, t, n] = gelu(T[l][x_t, n] + C[l][x_(t-1), n] - 0.5)      (exact, erf-based GELU; float32)

    where ``x_(t-1)`` is the previous real token, or row ``vocab`` (no previous token) at a sequence's first token,
    whatever the padding. One detector neuron per class of :data:`FAKE_DETECTORS` (``planted_neurons``) has
    ``T[l][v, n] = +A`` when token ``v``'s text is in the class and ``-A`` otherwise, with ``A = 3 * 0.75 ** l`` and
    its context column scaled by 0.2, so digits, capitals, leading spaces and punctuation each light up one neuron
    per layer, most sharply in layer 0. Special tokens are in no class.
    """

    Params = FakeModelParams
    params: FakeModelParams

    def __init__(self, params: FakeModelParams | None = None) -> None:
        super().__init__(params)
        self.tokenizer = fake_tokenizer()
        self.n_layers = self.params.n_layers
        self.d_mlp = self.params.d_mlp
        self.padding_side = self.params.padding_side
        self._vocabulary = len(self.tokenizer)
        self._tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def identity(self) -> str:
        p = self.params
        return (f"probekit.testing.FakeModel(v1, n_layers={p.n_layers}, d_mlp={p.d_mlp}, seed={p.seed}, "
                f"padding_side={p.padding_side}, vocabulary={_token_classes()[0]})")

    def planted_neurons(self, layer: int) -> dict[str, int]:
        """The detector neuron of each token class (:data:`FAKE_DETECTORS`) in ``layer``."""
        d = self.d_mlp
        return {name: (7 * layer + 1 + j * (d // 4)) % d for j, name in enumerate(FAKE_DETECTORS)}

    def neuron_values(self, input_ids: Sequence[int] | np.ndarray,
                      layers: Sequence[int] | None = None) -> dict[int, np.ndarray]:
        """The closed form on one unpadded sequence: ``{layer: float32 [len, d_mlp]}`` (default: every layer)."""
        ids = torch.as_tensor(np.asarray(input_ids, dtype=np.int64))
        previous = torch.cat([torch.tensor([self._vocabulary]), ids[:-1]])
        chosen = range(self.n_layers) if layers is None else layers
        return {layer: self._values(layer, ids, previous).numpy() for layer in chosen}

    def activations(self, batch: TokenBatch, layers: Sequence[int], sites: BatchSites) -> dict[int, np.ndarray]:
        """The closed form on a padded batch, reduced to ``sites``."""
        ids = batch.input_ids.long()
        real = batch.attention_mask.bool()
        no_previous = torch.full_like(ids[:, :1], self._vocabulary)
        previous = torch.cat([no_previous, ids[:, :-1]], dim=1)
        previous_real = torch.cat([torch.zeros_like(real[:, :1]), real[:, :-1]], dim=1)
        previous = torch.where(previous_real, previous, no_previous)
        ids = torch.where(real, ids, torch.zeros_like(ids))  # padded positions: any valid row; masked anyway
        return {layer: reduce_to_sites(self._values(layer, ids, previous), sites).numpy() for layer in layers}

    def _values(self, layer: int, ids: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"FakeModel has {self.n_layers} layers (0-{self.n_layers - 1}); no layer {layer}")
        token, context = self._layer_tables(layer)
        return torch.nn.functional.gelu(token[ids] + context[previous] - 0.5)

    def _layer_tables(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        if layer not in self._tables:
            vocabulary, d = self._vocabulary, self.d_mlp
            rng = np.random.default_rng([self.params.seed, layer])
            token = rng.standard_normal((vocabulary, d), dtype=np.float32)
            context = 0.5 * rng.standard_normal((vocabulary + 1, d), dtype=np.float32)
            amplitude = 3.0 * 0.75**layer
            classes = _token_classes()[1]
            for (name, neuron), members in zip(self.planted_neurons(layer).items(), classes):
                token[:, neuron] = np.where(members, amplitude, -amplitude)
                context[:, neuron] *= 0.2
            self._tables[layer] = (torch.from_numpy(token), torch.from_numpy(context))
        return self._tables[layer]
