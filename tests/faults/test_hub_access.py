"""A Hugging Face hub that cannot be reached: the run stops within seconds, exit code 2, with one line naming the model
or dataset, the hub and what happened, and one line with the way to work offline; no traceback, no retry lines.

Each run happens in a network namespace of its own where only loopback exists, so the hub is a local process (or no
process at all) and the machine's real network is never touched.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_tools import PROBEKIT, can_unshare

from probekit.errors import RunError
from probekit.hub import hub_timeout

pytestmark = pytest.mark.slow  # real processes, each run a few seconds

SPEC = """\
models:
  - {model}
datasets:
  - plugin: text_features
    params: {{max_sequences: 20, sequence_length: 32, max_examples: 100, features: [all_digits], source: {source}}}
layers: [0]
selectors:
  - plugin: mean_diff
ks: [1]
output: out
cache: null
"""

SILENT_PORT = 8765

#: a hub that accepts every connection and never answers; it says when it listens, and ends after three minutes
SILENT_HUB = f"""
import signal, socket, sys
signal.alarm(180)
server = socket.create_server(("127.0.0.1", {SILENT_PORT}))
open(sys.argv[1], "w").close()
held = []
while True:
    held.append(server.accept())
"""

#: what huggingface_hub prints while it retries
RETRY_LINES = ("Retrying in", "[Retry ", "thrown while requesting")

#: variables of the user's environment that would change what the runs below do
USER_SETTINGS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_ETAG_TIMEOUT",
                 "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE",
                 "PROBEKIT_HUB_TIMEOUT", "HF_TOKEN")


HUB_MODEL = "{plugin: huggingface, params: {model: some-org/some-model}}"


def spec(model: str = HUB_MODEL, source: str = "{kind: stdlib}") -> str:
    return SPEC.format(model=model, source=source)


@pytest.fixture(scope="module")
def network_namespace() -> None:
    """Skip unless this process may create a network namespace (root, or unprivileged user namespaces)."""
    if shutil.which("ip") is None or not can_unshare("-n"):
        pytest.skip("needs `unshare -n` (a private network namespace, loopback only) and `ip`; run as root")


def run_without_hub(directory: Path, text: str, endpoint: str, silent_hub: bool = False,
                    env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """`probekit run` on ``text`` in a new network namespace, HF_ENDPOINT=endpoint, an empty Hugging Face home in
    ``directory`` (unless ``env`` says otherwise); with ``silent_hub``, a hub that never answers listens on loopback.
    Returns the finished process and its seconds."""
    (directory / "spec.yaml").write_text(text)
    hub = '"$PYTHON" -c "$SILENT_HUB" listening & while [ ! -e listening ]; do sleep 0.05; done; ' if silent_hub else ""
    script = f'ip link set lo up && {hub}"$PROBEKIT" run spec.yaml; status=$?; {"kill $!; " if silent_hub else ""}' \
             'exit $status'
    home = directory / "hf"
    settings = {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
                "PROBEKIT": str(PROBEKIT), "PYTHON": sys.executable, "SILENT_HUB": SILENT_HUB, "COLUMNS": "200"}
    environment = {key: value for key, value in os.environ.items() if key not in USER_SETTINGS}
    started = time.monotonic()
    result = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=directory, capture_output=True, text=True,
                            env={**environment, **settings, **(env or {})}, timeout=300)
    return result, time.monotonic() - started


def assert_one_clear_error(result: subprocess.CompletedProcess, first_line: str, alternative: str) -> None:
    """Exit code 2; stderr is the error line and its hint line, nothing else: no traceback, no retry lines."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert lines[0] == f"error: {first_line}", result.stderr
    assert len(lines) == 2 and lines[1].startswith("Without the hub: ") and alternative in lines[1], result.stderr
    everything = result.stdout + result.stderr
    assert "Traceback" not in everything and not any(retry in everything for retry in RETRY_LINES), everything


def test_a_hub_that_never_answers_stops_the_run_within_the_default_timeout(network_namespace, tmp_path: Path) -> None:
    result, seconds = run_without_hub(tmp_path, spec(), f"http://127.0.0.1:{SILENT_PORT}", silent_hub=True)
    assert_one_clear_error(
        result, f"cannot load 'some-org/some-model': the Hugging Face hub at http://127.0.0.1:{SILENT_PORT} did not "
        f"answer within 10 s, and the local Hugging Face cache ({tmp_path / 'hf' / 'hub'}) does not hold it",
        "pass its local directory (config.json, weights, tokenizer files) instead of the hub id")
    assert "HF_HUB_OFFLINE=1" in result.stderr and "raise PROBEKIT_HUB_TIMEOUT (seconds)" in result.stderr
    # 10 s for probekit's question, 3 s for huggingface_hub's own first request, the rest is starting Python
    assert seconds < 60, f"{seconds:.0f} s"


@pytest.mark.parametrize(("model", "hub_id"), [
    (HUB_MODEL, "some-org/some-model"),
    ("{plugin: pythia, params: {name: pythia-70m}}", "EleutherAI/pythia-70m"),  # pythia maps its names to hub ids
])
def test_a_refused_connection_stops_the_run_at_once(network_namespace, tmp_path: Path, model: str, hub_id: str) -> None:
    result, seconds = run_without_hub(tmp_path, spec(model), "http://127.0.0.1:9")  # nothing listens on port 9
    assert_one_clear_error(
        result, f"cannot load '{hub_id}': the Hugging Face hub at http://127.0.0.1:9 is unreachable ([Errno 111] "
        f"Connection refused), and the local Hugging Face cache ({tmp_path / 'hf' / 'hub'}) does not hold it",
        "or copy a Hugging Face cache that holds it here and set HF_HUB_OFFLINE=1.")
    assert "PROBEKIT_HUB_TIMEOUT" not in result.stderr  # waiting longer would not help
    assert seconds < 30, f"{seconds:.0f} s"


def test_an_unknown_host_stops_the_run_at_once(network_namespace, tmp_path: Path) -> None:
    result, seconds = run_without_hub(tmp_path, spec(), "https://hub.invalid")
    assert result.returncode == 2 and "the Hugging Face hub at https://hub.invalid is unreachable (" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 2, result.stderr
    assert seconds < 30, f"{seconds:.0f} s"


def test_a_cached_model_still_runs_when_the_hub_never_answers(network_namespace, tmp_path: Path,
                                                              tiny_neox_dir: Path) -> None:
    """The local Hugging Face cache serves a model it holds, after one warning line, as huggingface_hub would."""
    repository = tmp_path / "hf" / "hub" / "models--some-org--some-model"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_neox_dir, repository / "snapshots" / commit)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)
    result, seconds = run_without_hub(tmp_path, spec(), f"http://127.0.0.1:{SILENT_PORT}", silent_hub=True,
                                      env={"PROBEKIT_HUB_TIMEOUT": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"warning: the Hugging Face hub at http://127.0.0.1:{SILENT_PORT} did not "
                                          "answer within 1 s; 'some-org/some-model' loads from the local Hugging Face "
                                          "cache"]
    assert (tmp_path / "out" / "results").is_dir() and seconds < 60


def test_a_hub_dataset_stops_the_run_when_the_hub_never_answers(network_namespace, tmp_path: Path) -> None:
    found = importlib.util.find_spec("datasets")
    if found is None or found.origin is None:  # absent, or only a namespace folder of that name on sys.path
        pytest.skip("the 'hub' text source needs the optional datasets package (pip install 'probekit[hub]')")
    text = spec("{plugin: minilm}", "{kind: hub, dataset: some-org/some-texts}")
    result, seconds = run_without_hub(tmp_path, text, f"http://127.0.0.1:{SILENT_PORT}", silent_hub=True,
                                      env={"PROBEKIT_HUB_TIMEOUT": "2"})
    assert_one_clear_error(
        result, f"cannot load hub dataset 'some-org/some-texts': the Hugging Face hub at http://127.0.0.1:{SILENT_PORT}"
        " did not answer within 2 s", "set HF_HUB_OFFLINE=1 to read it from the local datasets cache")
    assert seconds < 60, f"{seconds:.0f} s"


def test_the_timeout_is_bounded_by_default_and_set_by_probekit_hub_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROBEKIT_HUB_TIMEOUT", raising=False)
    assert 0 < hub_timeout() <= 60  # huggingface_hub's HF_HUB_ETAG_TIMEOUT, 10 s unless the user changed it
    monkeypatch.setenv("PROBEKIT_HUB_TIMEOUT", "2.5")
    assert hub_timeout() == 2.5
    for wrong in ("soon", "0", "-3", "inf", "nan"):
        monkeypatch.setenv("PROBEKIT_HUB_TIMEOUT", wrong)
        with pytest.raises(RunError, match=f"PROBEKIT_HUB_TIMEOUT='{wrong}': give the seconds to wait"):
            hub_timeout()
