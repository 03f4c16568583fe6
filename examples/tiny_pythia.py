"""Build and briefly train a tiny Pythia-architecture (GPT-NeoX) language model offline, on CPU.

The corpus is the one `examples/natural_language.yaml` reads: Debian's GNOME help pages in 9 languages
(apt-get install gnome-user-docs). The pages that `examples/tiny_pythia_languages.yaml` probes (the first
`--holdout` pages per language that the natural_language dataset picks with seed 0) are held out, so the model never
trains on the text it is inspected on. The script trains a byte-level BPE tokenizer on the training pages, trains a
4-layer GPT-NeoX (rotary, parallel residual, as Pythia) on random 128-token windows of them, and saves model and
tokenizer with `save_pretrained`, ready for `--model pythia --model-params '{name: runs/tiny-pythia}'`:

    .venv/bin/python examples/tiny_pythia.py    # runs/tiny-pythia, 300 steps, under a minute on 2 idle cores
    .venv/bin/python examples/tiny_pythia.py /tmp/tiny --steps 20 --seed 1

It prints the training loss, the loss on the held-out pages and the uniform baseline ln(vocabulary), and writes them
to `training.json` in the output directory. A toy: a model of this size trained for a minute learns which language it
is reading and common words, not much more.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

#: languages of examples/natural_language.yaml (the GNOME help default)
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "sv", "el")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", default="runs/tiny-pythia", help="checkpoint directory to write")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches (default 0)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per step (default 16)")
    parser.add_argument("--sequence-length", type=int, default=128, help="tokens per window (default 128)")
    parser.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary (default 2048)")
    parser.add_argument("--holdout", type=int, default=100,
                        help="pages per language kept out of training: the ones natural_language reads with "
                             "documents_per_label: N and seed 0 (default 100, as tiny_pythia_languages.yaml)")
    parser.add_argument("--languages", default=",".join(LANGUAGES),
                        help=f"comma-separated GNOME help languages (default {','.join(LANGUAGES)})")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    return parser.parse_args(argv)


def read_pages(languages: list[str], holdout: int) -> tuple[list[str], list[str]]:
    """Texts of the GNOME help pages in ``languages``: (training pages, held-out pages)."""
    from probekit.api import GnomeHelpSource, documents_by_label

    source = GnomeHelpSource(kind="gnome_help", languages=languages)
    every = documents_by_label(source, 10**6, seed=0)
    held = documents_by_label(source, holdout, seed=0) if holdout else {}
    held_origins = {document.origin for documents in held.values() for document in documents}
    train = [d.text for documents in every.values() for d in documents if d.origin not in held_origins]
    test = [d.text for documents in every.values() for d in documents if d.origin in held_origins]
    return train, test


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer in the GPT-NeoX style (leading spaces belong to tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   model_max_length=2048)


def token_stream(tokenizer, texts: list[str]):
    """Every text's tokens followed by end-of-text, concatenated in a fixed shuffled order."""
    import numpy as np

    ids = [encoding.ids for encoding in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    return np.concatenate([np.asarray([*ids[i], tokenizer.eos_token_id], dtype=np.int64) for i in order])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import numpy as np
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    train_texts, test_texts = read_pages([x.strip() for x in args.languages.split(",") if x.strip()], args.holdout)
    tokenizer = train_tokenizer(train_texts, args.vocab_size)
    train_ids, test_ids = token_stream(tokenizer, train_texts), token_stream(tokenizer, test_texts or train_texts)
    length = args.sequence_length
    print(f"{len(train_texts)} training pages ({len(train_ids):,} tokens), {len(test_texts)} held-out pages "
          f"({len(test_ids):,} tokens), vocabulary {len(tokenizer)}")

    config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=512, rotary_pct=0.25, use_parallel_residual=True,
                           max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id,
                           bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False)
    model = GPTNeoXForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, min(50, args.steps // 10))

    def learning_rate(step: int) -> float:  # linear warm-up, then cosine decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate)

    def windows(ids: np.ndarray, count: int) -> torch.Tensor:
        starts = rng.integers(0, len(ids) - length - 1, size=count)
        return torch.from_numpy(np.stack([ids[s:s + length] for s in starts]))

    fixed_test = windows(test_ids, 32)

    def held_out_loss() -> float:
        model.eval()
        with torch.no_grad():
            loss = float(model(input_ids=fixed_test, labels=fixed_test).loss)
        model.train()
        return loss

    uniform = math.log(len(tokenizer))
    print(f"uniform loss ln({len(tokenizer)}) = {uniform:.2f} nats; held-out loss before training "
          f"{held_out_loss():.2f}")
    model.train()
    log_every = max(1, args.steps // 6)
    train_loss = float("nan")
    for step in range(1, args.steps + 1):
        batch = windows(train_ids, args.batch_size)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        train_loss = loss.item()
        if step % log_every == 0 or step == args.steps:
            print(f"step {step:>5}/{args.steps}: training loss {train_loss:.2f}, "
                  f"{time.perf_counter() - started:.0f} s")
    test_loss = held_out_loss()
    output = Path(args.output)
    model.eval().save_pretrained(output)
    tokenizer.save_pretrained(output)
    summary = {"steps": args.steps, "seed": args.seed, "vocab_size": len(tokenizer), "uniform_loss": uniform,
               "train_loss": train_loss, "held_out_loss": test_loss, "training_pages": len(train_texts),
               "held_out_pages": len(test_texts), "parameters": sum(p.numel() for p in model.parameters()),
               "seconds": time.perf_counter() - started}
    (output / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"held-out loss {test_loss:.2f} nats (uniform {uniform:.2f}); {summary['parameters']:,} parameters; "
          f"saved {output} in {summary['seconds']:.0f} s")
    return summary


if __name__ == "__main__":
    main()
