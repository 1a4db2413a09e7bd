"""``xprnn lm train | generate``: character- and word-level language models."""

from __future__ import annotations

import math
import sys

import numpy as np

from .. import cells
from . import _checks, _export
from . import _common as c
from . import _train as tc
from ._common import CLIError
from ._sentiment_data import encoding

__all__ = ["add_parser"]


def add_parser(sub):
    p = sub.add_parser("lm", help="train a language model on a text file and sample from it")
    tasks = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = tasks.add_parser(
        "train", help="train a next-token model on one text file",
        description="Train a language model on one text file with truncated BPTT. The last "
        "--valid-fraction of the text (one contiguous piece) is held out for validation.")
    t.add_argument("--text", metavar="FILE",
                   help="a text file (.gz read transparently); required unless --resume")
    t.add_argument("--encoding", type=encoding, default="utf-8", metavar="NAME",
                   help="text encoding of --text, e.g. cp1252 or latin-1 (default: utf-8; a "
                        "byte-order mark is dropped)")
    t.add_argument("--level", choices=("char", "word"),
                   help="tokens are characters, or words split on whitespace; required unless "
                        "--resume")
    t.add_argument("--lowercase", action="store_true", help="lowercase the text first")
    t.add_argument("--tokenizer", choices=("whitespace", "unicode", "ascii"),
                   default="whitespace",
                   help="how --level word finds words: split on whitespace (punctuation stays "
                        "attached), or the lower-cased words of `sentiment train`'s tokenizer "
                        "(unicode: letters and digits of every script; ascii: the notebook's "
                        "a-z), which a classifier can start from (sentiment train --init-from)")
    m = t.add_argument_group("model")
    m.add_argument("--cell", choices=cells.names(), default="lstm",
                   help="recurrent cell")
    m.add_argument("--embedding-dim", type=c.positive_int, default=None, metavar="N",
                   help="token vector size (default: 64, or --hidden with --tie-weights)")
    m.add_argument("--hidden", type=c.positive_int, default=256, metavar="N",
                   help="hidden state size")
    m.add_argument("--layers", type=c.positive_int, default=2, metavar="N",
                   help="stacked recurrent layers")
    m.add_argument("--dropout", type=c.fraction, default=0.0, metavar="P",
                   help="dropout on embeddings, between layers and before the decoder")
    tc.add_noise_options(m)
    m.add_argument("--tie-weights", action="store_true",
                   help="decode with the embedding matrix (embedding dim = hidden)")
    x = t.add_argument_group("vocabulary")
    x.add_argument("--min-freq", type=c.positive_int, default=1, metavar="N",
                   help="rarer tokens become <unk>")
    x.add_argument("--max-vocab", type=c.positive_int, default=None, metavar="N",
                   help="keep the most frequent tokens only; the rest become <unk>")
    o = t.add_argument_group("training")
    o.add_argument("--seq-len", type=c.positive_int, default=100, metavar="T",
                   help="BPTT length: tokens per chunk")
    o.add_argument("--batch-size", type=c.positive_int, default=32, metavar="N",
                   help="parallel streams (rows) the text is cut into")
    o.add_argument("--epochs", type=c.positive_int, metavar="N",
                   help="passes over the training text (default: 10; with --resume, the "
                        "run's own total)")
    o.add_argument("--lr", type=c.positive_float, default=2e-3, help="learning rate")
    o.add_argument("--sampled-softmax", type=c.positive_int, default=None, metavar="S",
                   help="train with a sampled softmax over S candidate words per step instead "
                        "of the whole vocabulary (word level; e.g. 512 of 20,000 words: several "
                        "times faster); validation uses the full softmax")
    o.add_argument("--optimizer", choices=("adam", "adamw", "sgd", "adagrad"), default="adam",
                   help="update rule")
    o.add_argument("--clip", type=c.nonneg_float, default=5.0, metavar="NORM",
                   help="clip the gradient norm to this (0: no clipping)")
    o.add_argument("--patience", type=c.positive_int, metavar="N",
                   help="stop after this many epochs without a lower validation loss")
    o.add_argument("--valid-fraction", type=c.fraction, default=0.1, metavar="F",
                   help="the end of the text held out for validation (0: none)")
    o.add_argument("--max-minutes", type=c.positive_float, metavar="M",
                   help="stop training after this many minutes (cleanly, after the current chunk; "
                        "that epoch is still validated and saved)")
    o.add_argument("--seed", type=c.nonneg_int, default=0,
                   help="seeds the initial weights and dropout")
    c.add_progress_options(o)
    t.add_argument("--out", default="runs/lm", metavar="DIR",
                   help="directory for the model, history.json and learning_curve.png")
    tc.add_run_options(t)
    t.add_argument("--json", action="store_true", help="print only the final metrics, as JSON")
    c.add_backend_options(t, "float32")
    t.set_defaults(run=train)

    g = tasks.add_parser("generate", help="continue a prompt with a trained language model")
    g.add_argument("--model", required=True, metavar="DIR", help="directory written by lm train")
    g.add_argument("--prompt", default=None,
                   help="text to continue (default: the most frequent token)")
    g.add_argument("--length", type=c.nonneg_int, default=500, metavar="N",
                   help="tokens to generate")
    g.add_argument("--temperature", type=c.positive_float, default=0.8,
                   help="below 1: safer choices; above 1: more surprising ones")
    g.add_argument("--top-k", type=c.positive_int, default=None, metavar="K",
                   help="sample among the k most likely tokens only")
    g.add_argument("--greedy", action="store_true", help="always take the most likely token")
    g.add_argument("--seed", type=c.nonneg_int, default=None,
                   help="seed for sampling (default: a fresh one each run)")
    c.add_backend_options(g)
    g.set_defaults(run=generate)

    _export.add_lm(tasks)


# -- tokens --------------------------------------------------------------------------------------


def _tokens(text, tokenizer):
    if tokenizer.get("rule") is not None:  # sentiment train's words (--tokenizer unicode|ascii)
        from ._sentiment_data import tokenize

        return tokenize([text], {"tokenizer": tokenizer})[0]
    if tokenizer["lowercase"]:
        text = text.lower()
    return list(text) if tokenizer["level"] == "char" else text.split()


class _Chunks:
    """Re-iterable :func:`xprnn.batching.lm_batches` (``fit`` runs one pass per epoch)."""

    def __init__(self, ids, batch_size, seq_len):
        from ..text.batching import lm_batches

        self.ids, self.batch_size, self.seq_len = ids, batch_size, seq_len
        self._make = lm_batches
        self._len = math.ceil((ids.shape[0] // batch_size - 1) / seq_len)

    def __iter__(self):
        return self._make(self.ids, self.batch_size, self.seq_len)

    def __len__(self):
        return self._len


def _split(ids, fraction, batch_size):
    """Training and validation streams: the last ``fraction`` of the ids, contiguous."""
    n = ids.shape[0]
    n_valid = 0 if fraction == 0 else max(2, round(n * fraction))
    train, valid = ids[: n - n_valid], ids[n - n_valid:]
    if train.shape[0] < 2 * batch_size:
        raise CLIError(
            f"--text: {train.shape[0]} training tokens are too few for --batch-size {batch_size}"
            f" (each of the {batch_size} rows needs at least 2 tokens); use a longer text or a "
            "smaller --batch-size")
    return train, (valid if n_valid else None)


# -- train ---------------------------------------------------------------------------------------


def train(args):
    from ..models import LanguageModel
    from ..text import PAD, UNK, Vocabulary
    from ..text.readers import read_text

    tc.apply_resume(args, epochs=10)
    missing = [f"--{k}" for k in ("text", "level") if getattr(args, k) is None]
    if missing:
        raise CLIError(f"the following arguments are required: {', '.join(missing)}")
    if args.level == "char" and args.tokenizer != "whitespace":
        raise CLIError(f"--tokenizer {args.tokenizer} finds words: use it with --level word")
    out = tc.prepare_out(args)
    xp, device = c.backend_from_args(args)
    try:
        text = read_text(args.text, encoding=getattr(args, "encoding", None) or "utf-8")
    except ValueError as e:
        raise CLIError(f"--text: {e}") from None
    tokenizer = {"level": args.level, "lowercase": args.lowercase}
    words = args.level == "word" and args.tokenizer != "whitespace"
    if words:  # a classifier can start from this model: its words, <pad> and <unk>
        tokenizer = {"level": "word", "lowercase": True, "stopwords": None,
                     "rule": args.tokenizer}
    tokens = _tokens(text, tokenizer)
    if len(tokens) < 4:
        raise CLIError(f"--text {args.text}: only {len(tokens)} {args.level} tokens")
    n_train = len(tokens) - (0 if args.valid_fraction == 0
                             else max(2, round(len(tokens) * args.valid_fraction)))
    capped = args.min_freq > 1 or args.max_vocab is not None
    if args.level == "char" and not capped:
        # Every character of the file gets an id (as in char-rnn), so the held-out end never
        # meets an unknown one and no <unk> is needed.
        vocab = Vocabulary.build([tokens], specials=())
    else:
        vocab = Vocabulary.build([tokens[:n_train]], min_freq=args.min_freq,
                                 max_size=args.max_vocab, specials=(PAD, UNK) if words else (UNK,))
    ids = np.array(vocab.encode(tokens), dtype=np.int64)
    train_ids, valid_ids = _split(ids, args.valid_fraction, args.batch_size)
    train_b = _Chunks(train_ids, args.batch_size, args.seq_len)
    valid_b = None
    if valid_ids is not None:
        valid_b = _Chunks(valid_ids, min(args.batch_size, valid_ids.shape[0] // 2), args.seq_len)
    emb = args.embedding_dim or (args.hidden if args.tie_weights else 64)
    _checks.check_size(LanguageModel, dict(
        vocab_size=len(vocab), embedding_dim=emb, hidden_size=args.hidden, cell=args.cell,
        num_layers=args.layers, tie_weights=args.tie_weights and emb == args.hidden),
        args.dtype, "--hidden, --embedding-dim, --layers or --max-vocab")
    try:
        model = LanguageModel(len(vocab), emb, args.hidden, cell=args.cell,
                              num_layers=args.layers, dropout=args.dropout,
                              tie_weights=args.tie_weights, xp=xp, device=device,
                              dtype=args.dtype, seed=args.seed, **tc.noise_options(args))
    except (ValueError, TypeError) as e:
        raise CLIError(str(e).replace("embedding_dim", "--embedding-dim")
                       .replace("hidden_size", "--hidden")) from None
    samples = getattr(args, "sampled_softmax", None)  # None in runs saved before the option
    if samples is not None and samples >= len(vocab):
        raise CLIError(f"--sampled-softmax {samples}: must be below the vocabulary size "
                       f"({len(vocab)}); without it the softmax is over the whole vocabulary")
    model.softmax_samples = samples
    options = {k: v for k, v in vars(args).items() if k != "run"}
    model.meta = {"task": "lm", "tokenizer": tokenizer, "vocab": vocab.to_dict(),
                  "seq_len": args.seq_len, "options": options}
    say = tc.say(args)
    unit = "char" if args.level == "char" else "word"
    if not args.json:
        n_valid = 0 if valid_ids is None else valid_ids.shape[0]
        say(f"training on {train_ids.shape[0]:,} {unit}s ({n_valid:,} for validation), "
            f"vocabulary {len(vocab)}, "
            f"{model.num_parameters():,} parameters, {args.layers}x{args.cell} {args.hidden}")
    history, seconds, curve = tc.train_and_save(
        model, train_b, valid_b, args, out, options, say,
        f"{args.level} LM: {args.layers}x{args.cell} {args.hidden}")
    best = c.best_record(history)
    epochs, train_seconds, tps = c.throughput(history)
    loss = best.get("valid_loss")
    result = {"train_tokens": int(train_ids.shape[0]),
              "valid_tokens": 0 if valid_ids is None else int(valid_ids.shape[0]),
              "level": args.level, "vocab_size": len(vocab),
              "parameters": model.num_parameters(), "epochs": epochs,
              "best_epoch": history.best_epoch, "seconds": seconds, "tokens_per_s": tps,
              "train_loss": best.get("train_loss"), "valid_loss": loss,
              "valid_perplexity": best.get("valid_perplexity"),
              f"valid_bits_per_{unit}": None if loss is None else loss / math.log(2),
              "stop_reason": history.stop_reason, "model": str(out),
              "learning_curve": None if curve is None else str(curve),
              "world_size": history.world_size}
    if args.json:
        c.dump_json(result)
        return 0
    print(f"done: {epochs} epoch(s) in {seconds:.1f} s ({train_seconds:.1f} s training, "
          f"{tps:,.0f} tokens/s)"
          + (f"; stopped: {history.stop_reason}" if history.stop_reason else ""))
    if loss is None:
        print(f"train loss {result['train_loss']:.4f} nats/{unit} (no validation text)")
    else:
        print(f"valid loss {loss:.4f} nats/{unit}, perplexity {result['valid_perplexity']:.3f},"
              f" {result[f'valid_bits_per_{unit}']:.4f} bits/{unit} (best epoch "
              f"{history.best_epoch})")
    print(f"model saved to {out}")
    if curve is not None:
        print(f"learning curve drawn in {curve}")
    return 0


# -- generate ------------------------------------------------------------------------------------


def _prompt_ids(prompt, vocab, tokenizer):
    toks = _tokens(prompt, tokenizer)
    if not toks:
        raise CLIError(f"--prompt {prompt!r}: no {tokenizer['level']} tokens in it")
    unknown = sorted({t for t in toks if t not in vocab})
    if unknown and vocab.unk_id is None:
        raise CLIError(f"--prompt {prompt!r}: {tokenizer['level']}(s) {unknown} never appear "
                       "in the training text, so the model has no id for them")
    if unknown:
        print(f"xprnn: note: unknown {tokenizer['level']}(s) in the prompt read as "
              f"{vocab.unk_token}: {unknown}", file=sys.stderr)
    return vocab.encode(toks)


def generate(args):
    model = c.load_model(args, "lm")
    vocab, tokenizer = _checks.check_meta(model, args.model, "lm"), model.meta["tokenizer"]
    prompt = args.prompt
    if prompt is None:  # the most frequent token (the vocabulary lists them by frequency)
        prompt = next(t for t in vocab.tokens if t != vocab.unk_token)
    ids = _prompt_ids(prompt, vocab, tokenizer)
    try:
        new = model.stream(ids, args.length, temperature=args.temperature, top_k=args.top_k,
                           greedy=args.greedy, seed=args.seed)
    except ValueError as e:
        raise CLIError(str(e).replace("top_k", "--top-k")) from None
    sep = "" if tokenizer["level"] == "char" else " "
    out = sys.stdout
    try:  # each token as it is drawn, so a long text shows as it grows
        out.write(prompt)
        out.flush()
        for i in new:
            out.write(sep + vocab.tokens[i])
            out.flush()
        out.write("\n")
        out.flush()
    except BrokenPipeError:  # e.g. piped into head: stop quietly, as cat does
        new.close()
        _quiet_stdout()
    return 0


def _quiet_stdout():
    """After a broken pipe, point stdout at /dev/null so the exit flush does not fail too."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
