"""``xprnn sentiment train | eval | predict``: text classification from the command line
(``predict`` in ``cli/_predict.py``)."""

from __future__ import annotations

import numpy as np

from .. import cells
from . import _baseline, _blend, _checks, _export, _predict, _pretrained
from . import _common as c
from . import _sentiment_data as sd
from . import _team as team
from . import _train as tc
from ._common import CLIError

__all__ = ["add_parser"]

# Tuned on the shipped sample (2,700 training reviews, 2 CPU cores, 35-90 s): a small GRU with
# mean pooling and dropout 0.3 beat LSTM, max pooling, bidirectional, hidden 128, embedding
# 128, English stop-word removal, dropout 0/0.5 and batch 64 on its 1,000 test reviews (83.8%);
# bigger models overfit 2,700 reviews. The best epoch (on validation) was the 5th.
DEFAULTS = dict(cell="gru", embedding_dim=64, hidden=64, layers=1, pooling="mean", dropout=0.3,
                max_len=400, truncate="head", min_freq=2, max_vocab=20000, stopwords="none",
                batch_size=32, epochs=5, lr=2e-3, optimizer="adam", clip=5.0,
                valid_fraction=0.1, seed=0)


def add_parser(sub):
    p = sub.add_parser("sentiment", help="train, evaluate and use a text classifier")
    tasks = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    d = DEFAULTS

    t = tasks.add_parser(
        "train", help="train a classifier (on the shipped IMDB sample without --data)",
        description="Train a recurrent text classifier. Without --data it trains on the "
        "shipped IMDB sample (3,000 reviews) and tests on its 1,000 held-out reviews.")
    t.add_argument("--data", metavar="PATH", nargs="+",
                   help=sd.DATA_HELP + " (aclImdb: its train split; default: the shipped "
                        "sample)")
    t.add_argument("--test", metavar="PATH", nargs="+",
                   help="data to report test accuracy on, the same kinds as --data (aclImdb: "
                        "its test split); each argument is also reported alone")
    t.add_argument("--limit", type=c.positive_int, metavar="N",
                   help="use at most this many training rows and test rows (a seeded random "
                        "subset; for smoke tests)")
    sd.add_csv_options(t)
    m = t.add_argument_group("model")
    m.add_argument("--cell", choices=cells.names(), default=d["cell"],
                   help="recurrent cell")
    m.add_argument("--embedding-dim", type=c.positive_int, default=d["embedding_dim"],
                   metavar="N", help="word vector size")
    m.add_argument("--hidden", type=c.positive_int, default=d["hidden"], metavar="N",
                   help="hidden state size")
    m.add_argument("--layers", type=c.positive_int, default=d["layers"], metavar="N",
                   help="stacked recurrent layers")
    m.add_argument("--bidirectional", action="store_true", help="also read right to left")
    m.add_argument("--pooling", choices=("last", "mean", "max"), default=d["pooling"],
                   help="how the outputs over a review become one vector")
    m.add_argument("--dropout", type=c.fraction, default=d["dropout"], metavar="P",
                   help="dropout on embeddings, between layers and before the output layer")
    tc.add_noise_options(m)
    _pretrained.add_options(t.add_argument_group("fine-tuning a language model"))
    x = t.add_argument_group("text")
    x.add_argument("--max-len", type=c.positive_int, default=d["max_len"], metavar="N",
                   help="longest review kept, in tokens")
    x.add_argument("--truncate", choices=("head", "tail", "both"), default=d["truncate"],
                   help="which part of a longer review to keep")
    x.add_argument("--min-freq", type=c.positive_int, default=d["min_freq"], metavar="N",
                   help="rarer words become <unk>")
    x.add_argument("--max-vocab", type=c.positive_int, default=d["max_vocab"], metavar="N",
                   help="vocabulary size cap, <pad> and <unk> included")
    x.add_argument("--stopwords", choices=("none", "english"), default=d["stopwords"],
                   help="drop NLTK's English stop words")
    # no default here: a run resumed from before the option was saved with the ASCII rule
    x.add_argument("--tokenizer", choices=("unicode", "ascii"), default=None,
                   help="unicode: words are runs of letters and digits of any script, "
                        "case-folded ('clichés', '21st'); ascii: the seed notebook's ASCII "
                        "letters only ('clichs', 'st') (default: unicode)")
    o = t.add_argument_group("training")
    o.add_argument("--batch-size", type=c.positive_int, default=d["batch_size"], metavar="N",
                   help="reviews per step")
    o.add_argument("--epochs", type=c.positive_int, metavar="N",
                   help="passes over the training rows (default: 5; with --resume, the "
                        "run's own total)")
    o.add_argument("--lr", type=c.positive_float, default=d["lr"], help="learning rate")
    o.add_argument("--optimizer", choices=("adam", "adamw", "sgd", "adagrad"),
                   default=d["optimizer"], help="update rule")
    o.add_argument("--clip", type=c.nonneg_float, default=d["clip"], metavar="NORM",
                   help="clip the gradient norm to this (0: no clipping)")
    o.add_argument("--patience", type=c.positive_int, metavar="N",
                   help="stop after this many epochs without a better validation accuracy")
    o.add_argument("--valid-fraction", type=c.fraction, default=d["valid_fraction"],
                   metavar="F",
                   help="training rows held out to pick the best epoch (0: none)")
    o.add_argument("--max-minutes", type=c.positive_float, metavar="M",
                   help="stop training after this many minutes (cleanly, after the current batch; "
                        "that epoch is still validated and saved)")
    o.add_argument("--seed", type=c.nonneg_int, default=d["seed"],
                   help="seeds the split, the initial weights, dropout and the batch order")
    c.add_progress_options(o)
    _baseline.add_option(o)
    _blend.add_option(o, "save the recurrent model alone, not blended with the bag-of-words "
                         "baseline (which is still reported)")
    o.add_argument("--blend-z", type=c.nonneg_float, default=_blend.MIN_Z, metavar="Z",
                   help="blend the recurrent model in only if it raises the validation "
                        "log-likelihood over the baseline alone by Z standard errors (default "
                        f"{_blend.MIN_Z:g}; 0: whenever it raises it at all); otherwise the "
                        "saved classifier is the baseline")
    t.add_argument("--out", default="runs/sentiment", metavar="DIR",
                   help="directory for the model, history.json and learning_curve.png")
    tc.add_run_options(t)
    t.add_argument("--json", action="store_true", help="print only the final metrics, as JSON")
    c.add_backend_options(t, "float32")
    t.set_defaults(run=train)

    e = tasks.add_parser("eval", help="accuracy and loss of a saved classifier on labelled data")
    e.add_argument("--model", required=True, metavar="DIR",
                   help="directory written by sentiment train")
    e.add_argument("--data", required=True, metavar="PATH", nargs="+",
                   help=sd.DATA_HELP + " (aclImdb: its test split)")
    sd.add_csv_options(e)
    e.add_argument("--batch-size", type=c.positive_int, default=32, metavar="N",
                   help="reviews per forward pass")
    _blend.add_option(e, "evaluate the recurrent model alone, without the bag-of-n-grams model "
                         "it was blended with")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    c.add_backend_options(e)
    e.set_defaults(run=evaluate)

    _predict.add_parser(tasks)
    _export.add_sentiment(tasks)


# -- train ---------------------------------------------------------------------------------------


def _load_train_data(args):
    from ..text.readers import labels_to_ids, load_sample

    if args.data is None:
        texts, labels, test_texts, test_labels = load_sample()
        tests = [("the shipped sample's test rows", test_texts, test_labels)]
    else:
        texts, labels = sd.read_labelled(args.data, args, "train", "--data")
        tests = []
    if args.test is not None:
        tests = sd.read_sets(args.test, args, "test", "--test")
    rng = np.random.default_rng(args.seed)
    keep = sd.subset(len(texts), args.limit, rng)
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    _checks.check_labels(labels, "--data")
    y, classes = labels_to_ids(labels)
    if len(classes) < 2:
        raise CLIError(f"--data: a classifier needs at least 2 classes, found {classes}")
    test = []
    for where, test_texts, test_labels in tests:
        keep = sd.subset(len(test_texts), args.limit, rng)
        test.append((where, [test_texts[i] for i in keep],
                     sd.label_ids([test_labels[i] for i in keep], classes, "--test", where)))
    return texts, y, [str(k) for k in classes], test or None


def _split(n, fraction, seed):
    """Training and validation row indices: a seeded shuffle, the last ``fraction`` held out."""
    order = np.random.default_rng([seed, 1]).permutation(n)
    n_valid = 0 if fraction == 0 else max(1, round(n * fraction))
    if n - n_valid < 1:
        raise CLIError(f"--valid-fraction {fraction} leaves no training rows out of {n}")
    return order[: n - n_valid], order[n - n_valid:]


def _batches(seqs, y, args, shuffle):
    from ..text.batching import batches

    return batches(seqs, y, args.batch_size, shuffle=shuffle, seed=args.seed,
                   max_len=args.max_len, truncate=args.truncate)


def train(args):
    from ..models import SequenceClassifier
    from ..text import Vocabulary

    tc.apply_resume(args, epochs=DEFAULTS["epochs"],
                    tokenizer="ascii" if args.resume is not None else "unicode")
    out = tc.prepare_out(args)
    xp, device = c.backend_from_args(args)
    texts, y, classes, test = _load_train_data(args)
    tr, va = _split(len(texts), args.valid_fraction, args.seed)
    meta = {"task": "sentiment",
            "tokenizer": {"level": "word", "lowercase": True,
                          "stopwords": None if args.stopwords == "none" else args.stopwords,
                          "rule": args.tokenizer},
            "classes": classes, "max_len": args.max_len, "truncate": args.truncate}
    lm = None
    if args.init_from is not None:
        lm, lm_vocab, meta["tokenizer"] = _pretrained.load(args)
    tokens = sd.tokenize(texts, meta)
    dropped = [i for i in tr if not tokens[i]]  # nothing to learn from an empty text
    tr = np.array([i for i in tr if tokens[i]], dtype=np.int64)
    if tr.size == 0:
        raise CLIError("--data: no training row has any word left after tokenizing")
    try:
        vocab = lm_vocab if lm is not None else Vocabulary.build(
            [tokens[i] for i in tr], min_freq=args.min_freq, max_size=args.max_vocab)
    except ValueError as e:  # e.g. --max-vocab below the 2 specials
        raise CLIError(f"--max-vocab {args.max_vocab}: {e}") from None
    meta["vocab"] = vocab.to_dict()
    ids = sd.encode(tokens, vocab)
    train_b = _batches([ids[i] for i in tr], y[tr], args, shuffle=True)
    valid_b = _batches([ids[i] for i in va], y[va], args, shuffle=False) if va.size else None
    _checks.check_size(SequenceClassifier, dict(
        vocab_size=len(vocab), embedding_dim=args.embedding_dim, hidden_size=args.hidden,
        num_classes=len(classes), cell=args.cell, num_layers=args.layers,
        bidirectional=args.bidirectional), args.dtype,
        "--hidden, --embedding-dim, --layers or --max-vocab")
    try:
        model = SequenceClassifier(
            len(vocab), args.embedding_dim, args.hidden, len(classes), cell=args.cell,
            num_layers=args.layers, bidirectional=args.bidirectional, dropout=args.dropout,
            pooling=args.pooling, padding_idx=vocab.pad_id, xp=xp, device=device,
            dtype=args.dtype, seed=args.seed, **tc.noise_options(args))
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from None
    options = {k: v for k, v in vars(args).items() if k != "run"}
    model.meta = {**meta, "options": options}
    say = tc.say(args)
    if lm is not None:
        copied, fresh = _pretrained.start_from(model, lm, vocab.pad_id)
        if not args.json:
            say(f"starting from the language model in {args.init_from}: {len(copied)} "
                f"parameters copied, {', '.join(fresh)} fresh")
    if not args.json:
        say(f"training on {tr.size} reviews ({va.size} for validation"
            + (f", {len(dropped)} empty after tokenizing dropped" if dropped else "")
            + f"), vocabulary {len(vocab)}, {model.num_parameters():,} parameters, "
            f"{args.cell} {args.hidden} {args.pooling}-pooling")
    baseline = bow = None
    if args.baseline:
        tests = None if test is None else [(w, sd.tokenize(t, meta), ty) for w, t, ty in test]
        try:
            baseline, *bow = _baseline.fit_and_test(tokens, y, tr, va, tests, len(classes),
                                                    args, xp, device)
        except ValueError as e:  # a comparison, not the job: say so and go on
            say(f"baseline skipped: {e}")
        else:
            if not args.json:
                say(_baseline.describe(baseline))
    me = team.current()
    if me is None or me.rank == 0:
        _blend.remove(out)  # an earlier run's partner would be blended with this model
    history, seconds, curve = tc.train_and_save(
        model, train_b, valid_b, args, out, options, say, f"sentiment: {args.cell} {args.hidden}",
        _pretrained.lr_scale(model, args, len(train_b)))
    best = c.best_record(history)
    epochs, train_seconds, tps = c.throughput(history)
    partner, blend = None, None
    if bow and args.blend and va.size:
        partner, blend = _blend_with(model, bow, [tokens[i] for i in va], y[va], meta, vocab,
                                     args)
        if me is None or me.rank == 0:
            try:
                _blend.save(out, partner)
            except (OSError, ValueError) as e:
                _blend.remove(out)  # no half of a partner: the model stays whole, alone
                why = getattr(e, "strerror", None) or e
                raise CLIError(f"--out {out}: the bag-of-words model to blend with cannot be "
                               f"saved in {out / _blend.PARTNER} ({why}); {out} holds the "
                               f"{args.cell} alone (eval and predict use it so)",
                               code=1) from None
    elif bow and args.blend and not args.json:
        say("not blended with the baseline: choosing the blend needs validation rows "
            "(--valid-fraction 0 leaves none)")
    result = {"train_size": int(tr.size), "valid_size": int(va.size), "vocab_size": len(vocab),
              "parameters": model.num_parameters(), "epochs": epochs,
              "best_epoch": history.best_epoch, "seconds": seconds, "tokens_per_s": tps,
              "valid_accuracy": best.get("valid_accuracy"), "valid_loss": best.get("valid_loss"),
              "test_size": None, "test_accuracy": None, "test_loss": None,
              "stop_reason": history.stop_reason, "model": str(out),
              "learning_curve": None if curve is None else str(curve),
              "world_size": history.world_size, "baseline": baseline, "blend": blend,
              "cell": args.cell}
    if test is not None:
        m = _evaluate_sets(model, partner, test, meta, vocab, args.batch_size)
        result.update(test_size=m["size"], test_accuracy=m["accuracy"], test_loss=m["loss"],
                      tests=m["parts"])
        if blend is not None:
            blend.update(recurrent_test_accuracy=m["recurrent_accuracy"],
                         recurrent_test_loss=m["recurrent_loss"])
    if args.json:
        c.dump_json(result)
    else:
        _summary(result, train_seconds)
    return 0


def _blend_with(model, bow, tokens, y, meta, vocab, args):
    """The partner of ``model`` (the baseline ``bow = [model, table]`` with the blend's weights
    chosen on the validation texts ``tokens``/``y``) and the blend's record."""
    lp = _blend.recurrent_log_proba(model, meta, vocab, tokens, args.batch_size)
    lq = _blend.ngram_log_proba(*bow, tokens)
    d = _blend.decide(lp, lq, y, args.blend_z)
    blended = _blend.scores(_blend.mix(lp, lq, d.a, d.b), y)
    return _blend.Partner(*bow, d.a, d.b), {
        "recurrent_weight": d.a, "ngram_weight": d.b, "recurrent_used": d.used,
        "valid_gain": d.gain, "valid_gain_se": d.se, "z": args.blend_z,
        "valid_accuracy": blended["accuracy"], "valid_loss": blended["loss"],
        "recurrent_valid_accuracy": _blend.scores(lp, y)["accuracy"]}


def _sharded(compute, items):
    """``compute(items)``, an ``(N, C)`` array of the items' rows; under ``mpiexec`` each process
    computes every ``size``-th row and the rows are summed across the processes."""
    me = team.current()
    if me is None:
        return compute(items)
    mine = np.arange(me.rank, len(items), me.size)
    part = compute([items[i] for i in mine])
    full = np.zeros((len(items), part.shape[1]), dtype=np.float64)
    full[mine] = part
    return me.comm.allreduce(full)


def _evaluate_sets(model, partner, sets, meta, vocab, batch_size):
    """``{"size", "accuracy", "loss", "parts"}`` of the saved classifier (the blend when there is
    a ``partner``) over ``sets`` ``[(argument, texts, label ids)]``: each argument alone
    (``parts``), and all of them weighted by size. With a partner, also ``recurrent_accuracy``
    and ``recurrent_loss``: the recurrent model alone."""
    parts = []
    for where, texts, y in sets:
        tokens = sd.tokenize(texts, meta)
        lp = _sharded(lambda rows: _blend.recurrent_log_proba(model, meta, vocab, rows,
                                                               batch_size), tokens)
        part = {"data": where, "size": len(texts), **_blend.scores(lp, y)}
        if partner is not None:
            lq = _sharded(lambda rows: _blend.ngram_log_proba(partner.model, partner.table,
                                                               rows), tokens)
            part = {"data": where, "size": len(texts),
                    **_blend.scores(_blend.mix(lp, lq, partner.a, partner.b), y),
                    "recurrent_accuracy": part["accuracy"], "recurrent_loss": part["loss"]}
        parts.append(part)
    n = sum(p["size"] for p in parts)
    return {"size": n, "parts": parts,
            **{k: sum(p[k] * p["size"] for p in parts) / n for k in parts[0]
               if k not in ("data", "size")}}


def _summary(r, train_seconds):
    def acc(key):
        return "n/a" if r[key] is None else f"{r[key]:.4f}"

    print(f"done: {r['epochs']} epoch(s) in {r['seconds']:.1f} s "
          f"({train_seconds:.1f} s training, {r['tokens_per_s']:,.0f} tokens/s)"
          + (f"; stopped: {r['stop_reason']}" if r["stop_reason"] else ""))
    print(f"train size {r['train_size']}, valid size {r['valid_size']}, vocabulary "
          f"{r['vocab_size']}, {r['parameters']:,} parameters"
          + (f", best epoch {r['best_epoch']}" if r["best_epoch"] else ""))
    test = f"test accuracy {acc('test_accuracy')} ({r['test_size']} reviews)" \
        if r["test_size"] else "no test set (--test)"
    print(f"valid accuracy {acc('valid_accuracy')}, {test}")
    b, m = r["baseline"], r["blend"]
    if m is not None:
        alone = "" if m.get("recurrent_test_accuracy") is None else \
            f", test accuracy {m['recurrent_test_accuracy']:.4f}"
        evidence = (f"log-likelihood {m['valid_gain']:+.4f} +- {m['valid_gain_se']:.4f} per "
                    "validation text")
        if m["recurrent_used"]:
            print(f"  the {r['cell']} blended with the bag-of-words baseline (weights "
                  f"{m['recurrent_weight']:g} and {m['ngram_weight']:g}, chosen on validation: "
                  f"{evidence}); the {r['cell']} alone: valid accuracy "
                  f"{m['recurrent_valid_accuracy']:.4f}{alone} (--no-blend keeps it alone)")
        else:
            print(f"  the bag-of-words baseline alone: the {r['cell']} did not add to it on the "
                  f"validation rows ({evidence}, under {m['z']:g} standard errors; --blend-z "
                  f"sets the bar); the {r['cell']} alone: valid accuracy "
                  f"{m['recurrent_valid_accuracy']:.4f}{alone} (--no-blend keeps it alone)")
    if b is not None and b.get("test_accuracy") is not None and m is not None and \
            not m["recurrent_used"]:
        print(f"the model equals the bag-of-words baseline's test accuracy "
              f"{b['test_accuracy']:.4f}: it is that baseline (--blend-z 0 blends the "
              f"{r['cell']} in whatever it adds)")
    elif b is not None and b.get("test_accuracy") is not None:
        verdict = "beats" if r["test_accuracy"] > b["test_accuracy"] else "does not beat"
        print(f"the model {verdict} the bag-of-words baseline's test accuracy "
              f"{b['test_accuracy']:.4f} (--no-baseline to skip it)")
    tests = r.get("tests") or []
    for part in tests if len(tests) > 1 else []:  # each --test argument when several
        print(f"  test accuracy {part['accuracy']:.4f} ({part['size']} reviews, {part['data']})")
    print(f"model saved to {r['model']}")
    if r["learning_curve"]:
        print(f"learning curve drawn in {r['learning_curve']}")


# -- eval / predict ------------------------------------------------------------------------------


def evaluate(args):
    model = c.load_model(args, "sentiment")
    meta, vocab = model.meta, _checks.check_meta(model, args.model, "sentiment")
    partner = _blend.load(args.model, model, args) if args.blend else None
    sets = [(where, texts, sd.label_ids(labels, meta["classes"], "--data", where))
            for where, texts, labels in sd.read_sets(args.data, args, "test", "--data")]
    result = _evaluate_sets(model, partner, sets, meta, vocab, args.batch_size)
    result["blended"] = partner is not None
    parts = result.pop("parts")
    if len(parts) > 1:
        result["parts"] = parts
    if args.json:
        c.dump_json(result)
        return 0
    for p in parts:  # each --data argument, then all together when several
        print(f"accuracy {p['accuracy']:.4f}  loss {p['loss']:.4f}  ({p['size']} texts, "
              f"{p['data']})")
    if len(parts) > 1:
        print(f"accuracy {result['accuracy']:.4f}  loss {result['loss']:.4f}  "
              f"({result['size']} texts, all)")
    if partner is not None:
        cell = model.config["cell"]
        what = (f"the {cell} blended with its bag-of-n-grams model" if partner.a > 0 else
                f"its bag-of-n-grams model alone: the {cell} did not add to it in training")
        print(f"({what}; the {cell} alone: accuracy {result['recurrent_accuracy']:.4f}, loss "
              f"{result['recurrent_loss']:.4f}; --no-blend for it alone)")
    return 0
