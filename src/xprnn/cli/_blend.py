"""The classifier that ``sentiment train`` saves: the recurrent model blended with the
bag-of-n-grams baseline it was compared with (the "partner"), as a product of experts::

    log p(c | x) = a log p_rnn(c | x) + b log p_ngrams(c | x) - log Z(x),     a, b >= 0

``a`` and ``b`` are chosen on the validation rows by the mean negative log-likelihood, which is
convex in ``(a, b)`` (a log-sum-exp of functions linear in them, minus a linear one), so a coarse
grid and a fine one around its minimum find it. They weigh and calibrate at once: each is also a
temperature. The two models err on different texts (the baseline sees every n-gram of the whole
text, the RNN the word order of its first ``max_len`` words), so where the RNN is about as good
as the baseline the blend beats both (full IMDB: 0.910 against 0.894 and 0.886). Where the RNN
is much weaker, the weights fitted on a few hundred rows can still trust it by chance; so the
RNN is blended in only when it raises the validation log-likelihood by one standard error or
more (:func:`decide`, ``--blend-z``), and otherwise ``a = 0``: the saved classifier is then the
baseline, calibrated.

The partner is saved as a checkpoint directory ``ngrams/`` inside the model's: the
:class:`~xprnn.models.bow.BagOfNgrams` weights, with the n-gram table and ``(a, b)`` in its meta.
``sentiment eval`` and ``predict`` use it when it is there (``--no-blend``: the RNN alone); ONNX
export holds the RNN alone.

The probabilities are computed row by row on the host in float64 (``log_softmax`` of each
model's logits), in batches of texts sorted by length.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._common import CLIError

__all__ = ["PARTNER", "MIN_Z", "Choice", "Partner", "add_option", "choose", "decide", "mix",
           "save", "remove", "load", "recurrent_rows", "recurrent_log_proba",
           "ngram_log_proba", "log_proba", "scores"]

PARTNER = "ngrams"  # the partner's directory inside the model's
MIN_Z = 1.0  # standard errors of validation log-likelihood the RNN must add to be blended in


class Partner(NamedTuple):
    """The bag-of-n-grams half of a blend and the two weights."""

    model: object  # BagOfNgrams
    table: object  # NgramTable
    a: float  # the recurrent model's weight
    b: float  # the n-gram model's weight


def add_option(parser, help):
    parser.add_argument("--no-blend", dest="blend", action="store_false", help=help)


# -- the maths -----------------------------------------------------------------------------------


def log_softmax(z):
    """Row-wise ``log softmax`` of ``z (N, C)``, float64."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def mix(lp_rnn, lp_ngrams, a, b):
    """``log p (N, C)`` of the blend of two models' log-probabilities ``(N, C)``."""
    return log_softmax(a * lp_rnn + b * lp_ngrams)


def _nll(lp, y):
    return float(-np.mean(lp[np.arange(y.shape[0]), y]))


def choose(lp_rnn, lp_ngrams, y, top=4.0, recurrent=True):
    """The weights ``(a, b)`` in ``[0, top]^2`` that minimise the mean negative log-likelihood of
    the labels ``y (N,)``: a grid of step 0.25, then one of step 0.01 around its best point
    (the objective is convex, so the fine minimum lies next to the coarse one). Ties go to the
    smaller weights. ``recurrent=False`` holds ``a`` at 0: the n-gram model alone, calibrated."""
    y = np.asarray(y, dtype=np.int64)

    def best(grid_a, grid_b):
        return min(((_nll(mix(lp_rnn, lp_ngrams, a, b), y), a, b) for a in grid_a
                    for b in grid_b), key=lambda t: t[0])

    coarse = np.arange(0.0, top + 1e-9, 0.25)
    _, a0, b0 = best(coarse if recurrent else [0.0], coarse)

    def fine(w):
        return np.clip(np.round(np.arange(w - 0.25, w + 0.25 + 1e-9, 0.01), 2), 0.0, top)

    _, a, b = best(np.unique(fine(a0)) if recurrent else [0.0], np.unique(fine(b0)))
    return float(a), float(b)


class Choice(NamedTuple):
    """The blend :func:`decide` settled on, and the evidence for the recurrent model."""

    a: float  # the recurrent model's weight (0: not used)
    b: float  # the n-gram model's weight
    gain: float  # mean log-likelihood per row the free blend adds to the n-gram model alone
    se: float  # its standard error over the rows
    used: bool  # whether the gain reached the threshold, so that the blend uses the RNN


def decide(lp_rnn, lp_ngrams, y, z=MIN_Z):
    """The weights of the saved classifier: :func:`choose`'s, if the recurrent model earns its
    place, else the n-gram model alone (``a = 0``, ``b`` calibrating it).

    The recurrent model earns it when the blend raises the validation rows' log-likelihood over
    the calibrated n-gram model alone by at least ``z`` standard errors (a paired comparison,
    row by row; one standard error is the classic "one-standard-error rule" of model selection).
    The weights are fitted on the same few rows that picked the recurrent model's best epoch,
    which flatters it: on the sweep's 2,000-text sets (``benchmarks/sweep.py``) the default
    GRU's gain was under one standard error in all nine runs (three sets, three seeds), and the
    free weights then cost up to 1.1 points of test accuracy against the baseline (on
    one-sentence reviews in all three seeds). GRUs with something to add cleared the bar: 1.1-1.2
    standard errors fine-tuned from a language model on 2,000 short texts, 1.1-6.0 (eight runs
    of nine) on 10,000 texts and more. ``z = 0`` keeps the free weights whenever they raise the
    likelihood at all. One validation row has no standard error (infinite): only ``z = 0``
    blends then.
    """
    y = np.asarray(y, dtype=np.int64)
    a, b = choose(lp_rnn, lp_ngrams, y)
    _, b0 = choose(lp_rnn, lp_ngrams, y, recurrent=False)
    rows = np.arange(y.shape[0])
    d = mix(lp_rnn, lp_ngrams, a, b)[rows, y] - mix(lp_rnn, lp_ngrams, 0.0, b0)[rows, y]
    gain = float(np.mean(d))
    se = float(np.std(d, ddof=1) / np.sqrt(d.shape[0])) if d.shape[0] > 1 else float("inf")
    if a > 0 and gain > 0 and (z == 0 or gain >= z * se):
        return Choice(a, b, gain, se, True)
    return Choice(0.0, b0, gain, se, False)


# -- the probabilities of texts -----------------------------------------------------------------


def _by_length(lengths, batch_size):
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _logits(model, x, lengths):
    from ..backend import to_numpy

    return to_numpy(model.predict_logits(x, lengths))


def recurrent_rows(model, meta, vocab, token_lists, batch_size, f):
    """``f(ids, lengths)`` (a host ``(B, C)`` array per batch) for tokenized texts, batched as
    the recurrent model reads them (truncated to ``max_len``, sorted by length), in their
    order."""
    from ..text.batching import pad_batch
    from . import _sentiment_data as sd

    ids = sd.encode(token_lists, vocab)
    out = np.empty((len(ids), len(meta["classes"])), dtype=np.float64)
    for rows in _by_length([min(len(s), meta["max_len"]) for s in ids], batch_size):
        x, lengths = pad_batch([ids[i] for i in rows], meta["max_len"], meta["truncate"])
        out[rows] = f(x, lengths)
    return out


def recurrent_log_proba(model, meta, vocab, token_lists, batch_size):
    """``log p (N, C)`` of the recurrent classifier for tokenized texts, in their order."""
    return recurrent_rows(model, meta, vocab, token_lists, batch_size,
                          lambda x, lengths: log_softmax(_logits(model, x, lengths)))


def ngram_log_proba(model, table, token_lists, batch_size=256):
    """``log p (N, C)`` of a :class:`~xprnn.models.bow.BagOfNgrams` for tokenized texts."""
    from ..text.batching import pad_batch

    grams = [table.encode(t) for t in token_lists]
    out = np.empty((len(grams), model.config["num_classes"]), dtype=np.float64)
    for rows in _by_length([g.shape[0] for g in grams], batch_size):
        x, lengths = pad_batch([grams[i] for i in rows])
        out[rows] = log_softmax(_logits(model, x, lengths))
    return out


def log_proba(model, meta, vocab, token_lists, batch_size, partner=None):
    """``log p (N, C)`` of the saved classifier: the blend when there is a ``partner``."""
    lp = recurrent_log_proba(model, meta, vocab, token_lists, batch_size)
    if partner is None:
        return lp
    return mix(lp, ngram_log_proba(partner.model, partner.table, token_lists), partner.a,
               partner.b)


def scores(lp, y):
    """``{"accuracy", "loss"}`` of log-probabilities ``(N, C)`` for labels ``y (N,)``."""
    y = np.asarray(y, dtype=np.int64)
    return {"accuracy": float(np.mean(np.argmax(lp, axis=1) == y)), "loss": _nll(lp, y)}


# -- the partner on disk -------------------------------------------------------------------------


def save(out, partner):
    """Write ``partner`` to ``out/ngrams`` (each file atomically)."""
    from ..checkpoint import save as save_checkpoint

    partner.model.meta = {"task": "sentiment-ngrams", "ngrams": partner.table.features,
                          "n": partner.table.n, "weights": [partner.a, partner.b]}
    save_checkpoint(partner.model, Path(out) / PARTNER)


def remove(out):
    """Remove a partner left in ``out`` by an earlier run: it belongs to another model."""
    path = Path(out) / PARTNER
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def load(model_dir, model, args):
    """The partner saved beside ``model`` in ``model_dir``, or ``None`` when there is none;
    a clear :class:`CLIError` when it is there but unusable."""
    from ..checkpoint import load as load_checkpoint
    from ..models.bow import BagOfNgrams
    from ..text.ngrams import NgramTable
    from . import _common as c

    path = Path(model_dir) / PARTNER
    if not path.exists():
        return None
    where = f"--model {model_dir}: its n-gram model {path}"
    xp, device = c.backend_from_args(args)
    try:
        bow = load_checkpoint(path, xp=xp, device=device, dtype=args.dtype)
    except (ValueError, TypeError) as e:
        raise CLIError(f"{where}: {e} (--no-blend uses the recurrent model alone)") from None
    meta = bow.meta
    grams, n, weights = meta.get("ngrams"), meta.get("n"), meta.get("weights")
    ok = (isinstance(bow, BagOfNgrams) and isinstance(grams, list)
          and all(isinstance(g, str) for g in grams) and isinstance(n, int) and n >= 1
          and isinstance(weights, list) and len(weights) == 2
          and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                  for w in weights))
    if not ok:
        raise CLIError(f"{where}: not a bag-of-n-grams model with its n-gram table and two "
                       "non-negative weights (--no-blend uses the recurrent model alone)")
    if len(grams) + 1 != bow.config["num_features"] or \
            bow.config["num_classes"] != model.config.get("num_classes"):
        raise CLIError(f"{where}: its {len(grams)} n-grams and "
                       f"{bow.config['num_classes']} classes do not fit its weights "
                       f"({bow.config['num_features']} rows) or the recurrent model's "
                       f"{model.config.get('num_classes')} classes")
    return Partner(bow, NgramTable(grams, n), float(weights[0]), float(weights[1]))
