"""``sentiment train --init-from LMDIR``: fine-tune a language model into a classifier (ULMFiT).

The recipe: ``xprnn lm train --level word --tokenizer unicode`` on unlabelled text (the reviews
themselves will do), then ``xprnn sentiment train --init-from LMDIR``. The classifier takes the
language model's tokenizer, vocabulary, sizes, embedding and recurrent weights; only its output
layer starts fresh. ``--discriminative F`` lets each layer below the output learn ``F`` times
slower than the one above, and ``--unfreeze gradual`` trains the output layer alone in the first
epoch and unfreezes one more layer, from the top, each epoch after (:func:`xprnn.optim.layerwise`).
"""

from __future__ import annotations

import argparse

import numpy as np

from . import _checks
from . import _common as c
from ._common import CLIError

__all__ = ["add_options", "load", "start_from", "lr_scale"]

RULES = ("unicode", "ascii")  # the sentiment tokenizers a language model may share


def _factor(text):
    value = c.positive_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def add_options(group):
    group.add_argument("--init-from", metavar="LMDIR",
                       help="start from a word-level language model (xprnn lm train --level word "
                            "--tokenizer unicode): its vocabulary, sizes, embedding and recurrent "
                            "weights; --cell, --hidden, --embedding-dim, --layers, --tokenizer and "
                            "the vocabulary options are then the language model's")
    group.add_argument("--discriminative", type=_factor, default=1.0, metavar="F",
                       help="each layer below the output learns at 1/F the rate of the one "
                            "above (ULMFiT: 2.6; default 1: one rate)")
    group.add_argument("--unfreeze", choices=("all", "gradual"), default="all",
                       help="gradual: the first epoch trains the output layer only, each later "
                            "epoch one more layer from the top")


def load(args):
    """``(language model, vocabulary, tokenizer)`` from ``--init-from``, checked to be a word
    model whose words are the classifier's."""
    lm = c.load_model(args, "lm", "--init-from")
    where = args.init_from
    try:
        vocab = _checks.check_meta(lm, where, "lm")
    except CLIError as e:
        raise CLIError(str(e).replace("--model", "--init-from", 1)) from None
    tokenizer = lm.meta["tokenizer"]
    if tokenizer.get("level") != "word" or tokenizer.get("rule") not in RULES:
        raise CLIError(f"--init-from {where}: the language model's tokens are not the "
                       f"classifier's words ({tokenizer!r:.80}); train it with --level word "
                       f"--tokenizer unicode")
    if vocab.pad_id is None or vocab.unk_id is None:
        raise CLIError(f"--init-from {where}: the vocabulary has no <pad> or <unk> token")
    if args.stopwords != "none":
        raise CLIError("--stopwords: a language model read every word; with --init-from the "
                       "classifier must too (--stopwords none)")
    args.tokenizer = tokenizer["rule"]
    args.cell, args.embedding_dim = lm.config["cell"], lm.config["embedding_dim"]
    args.hidden, args.layers = lm.config["hidden_size"], lm.config["num_layers"]
    return lm, vocab, dict(tokenizer, stopwords=None)


def start_from(model, lm, pad_id):
    """Copy every parameter the two models share by name and shape (the embedding and the
    forward direction's recurrent layers); returns the names copied and those left fresh."""
    from ..backend import from_numpy, to_numpy

    src, dst = lm.state_dict(), model.state_dict()
    take = {k: src[k] for k in dst if k in src and tuple(src[k].shape) == tuple(dst[k].shape)}
    E = np.array(to_numpy(take["embedding.weight"]))  # padding is zero in a classifier
    E[pad_id] = 0.0
    take["embedding.weight"] = from_numpy(E, model.xp, model.device, str(E.dtype))
    model.update(take)
    return sorted(take), sorted(set(dst) - set(take))


def lr_scale(model, args, steps_per_epoch):
    """The optimizer's ``lr_scale`` for ``--discriminative`` and ``--unfreeze``, or None."""
    from ..optim import layerwise

    if args.discriminative == 1 and args.unfreeze == "all":
        return None
    every = steps_per_epoch if args.unfreeze == "gradual" else None
    return layerwise(model.layer_groups(), args.discriminative, every)
