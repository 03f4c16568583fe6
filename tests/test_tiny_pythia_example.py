"""Smoke test of examples/tiny_pythia.py (used by docs/case-studies.md): a few training steps on GNOME help pages
write a checkpoint that probekit's Pythia adapter loads, with activations, ablation and logit hooks working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from probekit.contracts import TokenBatch
from probekit_plugins.models.pythia import Pythia

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "tiny_pythia.py"


@pytest.mark.skipif(not Path("/usr/share/help/C/gnome-help").is_dir(), reason="apt-get install gnome-user-docs")
def test_tiny_pythia_script_writes_a_checkpoint_the_pythia_adapter_loads(tmp_path: Path) -> None:
    output = tmp_path / "tiny"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(output), "--steps", "3", "--seed", "1", "--languages", "en,de",
         "--holdout", "5", "--vocab-size", "400", "--batch-size", "4", "--sequence-length", "32"],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "held-out loss" in completed.stdout
    summary = json.loads((output / "training.json").read_text())
    assert summary["steps"] == 3 and summary["held_out_pages"] == 10
    assert np.isfinite(summary["held_out_loss"]) and summary["uniform_loss"] == pytest.approx(np.log(400))

    adapter = Pythia(Pythia.Params(name=str(output)))
    assert (adapter.n_layers, adapter.d_mlp) == (4, 512)
    ids = adapter.tokenizer("Klicken Sie auf Einstellungen. Click Settings.")["input_ids"]
    assert len(ids) > 4
    batch = TokenBatch(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    result = adapter.ablate([(1, 7)], batch, "zero")
    assert np.isfinite(result.loss_clean).all() and np.isfinite(result.loss_ablated).all()
    assert adapter.unembedding().shape == (400, 128)
    assert adapter.weights(0).W_in.shape == (512, 128)
