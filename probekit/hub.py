"""Hugging Face hub access with an explicit timeout: one question to the hub before loading, and one clear error.

Loading a hub id through transformers or datasets first asks the hub about the repository with no timeout at all, and
a file the local cache lacks is asked for again up to five more times, 60 s each, with backoff and a warning line per
try. So a hub that accepts connections but never answers hangs a run for good, and an unreachable one prints half a
minute of retry lines. probekit asks the hub that same first question itself, once, with a timeout
(``PROBEKIT_HUB_TIMEOUT``) and no retry; when the hub does not answer, the adapter loads from the local cache or the
run stops with one message.
"""

from __future__ import annotations

import math
import os
from typing import Literal

from probekit.errors import RunError

RepoType = Literal["model", "dataset"]

#: environment variable: seconds to wait for the hub's answer (default: huggingface_hub's HF_HUB_ETAG_TIMEOUT, 10 s)
TIMEOUT_VARIABLE = "PROBEKIT_HUB_TIMEOUT"

#: how huggingface_hub and datasets spell "on" in their environment variables
TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})

#: answers that mean the hub is down, not that the repository is missing or private
SERVER_ERRORS = frozenset({500, 502, 503, 504})

#: endpoint -> why it failed; a hub found unreachable is not asked again by this process
_unreachable: dict[str, str] = {}


def hub_timeout() -> float:
    """Seconds to wait for the hub: PROBEKIT_HUB_TIMEOUT, else HF_HUB_ETAG_TIMEOUT (huggingface_hub's, 10 s)."""
    from huggingface_hub import constants

    value = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not value:
        return float(constants.HF_HUB_ETAG_TIMEOUT)
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise RunError(f"{TIMEOUT_VARIABLE}={value!r}: give the seconds to wait for the Hugging Face hub, e.g. 30")
    return seconds


def hub_endpoint() -> str:
    """The hub huggingface_hub talks to (HF_ENDPOINT, default https://huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def offline(repo_type: RepoType) -> bool:
    """True in offline mode (HF_HUB_OFFLINE=1, or HF_DATASETS_OFFLINE=1 for datasets): the hub is asked nothing."""
    from huggingface_hub import constants

    datasets_offline = repo_type == "dataset" and os.environ.get("HF_DATASETS_OFFLINE", "").upper() in TRUE_VALUES
    return bool(constants.HF_HUB_OFFLINE) or datasets_offline


def hub_problem(repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> str | None:
    """Why the hub cannot serve ``repo_id`` now (e.g. 'did not answer within 10 s'), or None when it answers.

    One request, the repository's info, with an explicit timeout and no retry. Any answer but a server error counts:
    a missing, private or gated repository is left to the loader and its own message. Offline mode asks nothing.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError

    endpoint = hub_endpoint()
    if offline(repo_type):
        return None
    if endpoint in _unreachable:
        return _unreachable[endpoint]
    timeout = hub_timeout()
    try:
        HfApi(endpoint=endpoint).repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=timeout)
        return None
    except HfHubHTTPError as error:
        response = getattr(error, "response", None)
        status = response.status_code if response is not None else None
        if status not in SERVER_ERRORS:
            return None
        problem = f"answered HTTP {status}"
    except ValueError:  # not a valid repository id: the loader says so
        return None
    except Exception as error:  # the HTTP client's own errors: DNS, connection refused or reset, proxy, timeout
        timed_out = "Timeout" in type(error).__name__
        problem = f"did not answer within {timeout:g} s" if timed_out else f"is unreachable ({error or repr(error)})"
    _unreachable[endpoint] = problem
    return problem


def unreachable_error(what: str, problem: str, alternative: str) -> RunError:
    """The error of a run that needs the hub: one line naming what, where and what happened, one with the way out."""
    slow = f"; if the hub is just slow, raise {TIMEOUT_VARIABLE} (seconds)" if "did not answer" in problem else ""
    return RunError(f"cannot load {what}: the Hugging Face hub at {hub_endpoint()} {problem}\n"
                    f"Without the hub: {alternative}{slow}.")
