"""The parameters most datasets share, declared once: balanced sampling and sequence windows.

A dataset's ``Params`` derives from :class:`SamplingParams` and, when it cuts sequences, :class:`WindowParams`; to
change a default it redeclares the field with the shared type, which carries the bounds and the description::

    class MyParams(WindowParams, SamplingParams):
        skip_first: SkipFirst = 10
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from probekit.contracts import PluginParams
from probekit.datasets.sampling import PositiveFraction

MaxExamples = Annotated[int, Field(ge=10, description="probe sites sampled per feature")]
PositiveShare = Annotated[PositiveFraction, Field(description="sampled positive share is the natural rate clipped "
                                                              "to [low, high] (paper: 0.2 to 0.5)")]
Seed = Annotated[int, Field(description="seed for the choice of documents and windows, and for sampling")]
SequenceLength = Annotated[int, Field(ge=8, description="tokens per sequence, special tokens included")]
SkipFirst = Annotated[int, Field(ge=0, description="positions at the start of each sequence never probed")]


class SamplingParams(PluginParams):
    """``max_examples``, ``positive_fraction`` and ``seed``: how a feature's sites are drawn (see sample_balanced)."""

    max_examples: MaxExamples = 2000
    positive_fraction: PositiveShare = (0.2, 0.5)
    seed: Seed = 0


class WindowParams(PluginParams):
    """``sequence_length`` and ``skip_first``: the model inputs cut from documents, and the positions never probed."""

    sequence_length: SequenceLength = 128
    skip_first: SkipFirst = 0
