"""Building blocks for dataset plugins: reading sources, aligning labels to tokens, cutting windows, balanced sampling
and assembling a ``ProbingDataset``. Plugin authors import them from ``probekit.api``."""
