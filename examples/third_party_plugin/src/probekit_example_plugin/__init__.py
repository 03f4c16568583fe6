"""Example third-party probekit plugins: the ``welch_t`` selector and the ``keyword_tokens`` and ``regex_tokens``
datasets, written against ``probekit.api`` only."""

from __future__ import annotations

from probekit_example_plugin.keywords import KeywordTokens
from probekit_example_plugin.regex_tokens import RegexTokens
from probekit_example_plugin.welch import WelchT, welch_t_scores

__all__ = ["KeywordTokens", "RegexTokens", "WelchT", "welch_t_scores"]
