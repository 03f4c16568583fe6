"""Neuron case studies (``probekit inspect``): the analyses of the paper's section 5 on neurons a run found.

Each analysis is a module with one function that computes plain numbers (an ``Inspection``: tables, a description,
a matplotlib figure) from a model adapter, a corpus and neuron ids written as in the results (``L1.N111``):

- ``max_activating``: the top-N token positions over a corpus, and random examples from a quantile band;
- ``by_class``: a feature's activations by class (and by the dataset's finer kinds), one neuron or their sum;
- ``vocab``: mean / max / count of activation per vocabulary token, optionally split by a feature's label;
- ``logits``: the direct effect on the output logits, ``W_U @ W_out[:, n]`` through the final norm's scale;
- ``ablation``: language-model loss with the neurons zero- or mean-ablated, per class of sequence;
- ``weights``: input norm, input bias, their product and output norm of every neuron of a layer.
"""
