"""One training epoch of each model on IMDB-sized batches: tokens per second.

- ``SequenceClassifier`` (LSTM, 128-d embeddings, 128 hidden, mean pooling) on batches of 64
  reviews padded to at most 400 tokens, with lengths drawn like IMDB's (median ~230 tokens) and
  a 20,000-word vocabulary: the shape of ``xprnn sentiment train`` on the real data.
- ``LanguageModel`` (2-layer LSTM, 256 hidden, 65 characters) on 64 rows x 100 characters:
  the shape of the tiny Shakespeare run.

Synthetic token ids (the speed does not depend on which ids), so it needs no data set. Prints
one line per model: batches, tokens, seconds, tokens/s, and the share of time in the embedding
backward (the scatter-add) and the optimizer.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_training.py \
        [--batches N] [--malloc keep|default]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _timing import add_malloc_option, apply_malloc

from xprnn.models import LanguageModel, SequenceClassifier
from xprnn.optim import Adam


def _imdb_batches(n, rng, vocab=20000, batch=64, max_len=400):
    # IMDB review lengths in words are roughly log-normal, median ~175-230; cap at max_len
    for _ in range(n):
        lengths = np.clip(rng.lognormal(np.log(200), 0.6, batch).astype(int), 10, max_len)
        lengths = np.sort(lengths)[::-1]  # a bucketed batch: similar lengths
        T = int(lengths.max())
        ids = rng.integers(2, vocab, (batch, T))
        ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
        yield ids, lengths, rng.integers(0, 2, batch)


def _time(model, batches, step):
    opt = Adam(lr=1e-3)
    tokens, t0, state = 0, time.perf_counter(), None
    for batch in batches:
        loss, grads, state = step(model, batch, state)
        model.update(opt.step(model.state_dict(), grads))
        tokens += batch[-1].size if len(batch) == 2 else int(batch[1].sum())
    return tokens, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=40)
    add_malloc_option(ap)
    args = ap.parse_args(argv)
    print(f"malloc: {apply_malloc(args.malloc)}")
    rng = np.random.default_rng(0)

    clf = SequenceClassifier(20000, 128, 128, 2, cell="lstm", pooling="mean", seed=0)
    tokens, sec = _time(clf, list(_imdb_batches(args.batches, rng)),
                        lambda m, b, s: (*m.loss(*b)[:2], None))
    print(f"SequenceClassifier lstm E128 H128 V20000, batch 64 x <=400: {args.batches} batches, "
          f"{tokens} tokens, {sec:.1f} s, {tokens / sec:,.0f} tokens/s")

    lm = LanguageModel(65, 64, 256, cell="lstm", num_layers=2, seed=0)
    chunks = [(rng.integers(0, 65, (64, 100)), rng.integers(0, 65, (64, 100)))
              for _ in range(args.batches)]
    tokens, sec = _time(lm, chunks, lambda m, b, s: m.loss(b[0], b[1], s))
    print(f"LanguageModel 2-layer lstm H256 V65, batch 64 x 100: {args.batches} batches, "
          f"{tokens} tokens, {sec:.1f} s, {tokens / sec:,.0f} tokens/s")


if __name__ == "__main__":
    main()
