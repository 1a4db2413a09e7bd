"""``xprnn sentiment export`` and ``xprnn lm export``: a saved model as an ONNX graph
(:func:`xprnn.export.to_onnx`), with a JSON file beside it holding what a server needs to turn
text into the graph's inputs: the vocabulary, the tokenizer's rules, the classes, padding and
truncation, the shape of the recurrent state."""

from __future__ import annotations

import json
from pathlib import Path

from .._version import __version__
from . import _blend
from . import _common as c
from ._checks import check_meta, warn
from ._common import CLIError

__all__ = ["add_sentiment", "add_lm", "sidecar_path"]

FORMAT = "xprnn-onnx"  # the JSON file's "format"; "format_version" changes if its keys do


def _add(tasks, writer, run):
    p = tasks.add_parser(
        "export", help="write the model as an ONNX graph, and its vocabulary as JSON",
        description=f"Export a model saved by {writer} to ONNX (for ONNX Runtime in C++, C#, "
        "Java, JavaScript, ...), and write beside it FILE.json: the vocabulary and tokenizer "
        "settings a server needs. Needs the onnx package (pip install 'xprnn[onnx]').")
    p.add_argument("--model", required=True, metavar="DIR", help=f"directory written by {writer}")
    p.add_argument("--out", required=True, metavar="FILE.onnx",
                   help="the ONNX file to write; FILE.json is written beside it")
    # the weights are read on the host, in the saved dtype; the graph is float32 either way
    p.set_defaults(run=run, backend="numpy", device=None, dtype=None)


def add_sentiment(tasks):
    _add(tasks, "sentiment train", export_sentiment)


def add_lm(tasks):
    _add(tasks, "lm train", export_lm)


def sidecar_path(onnx_path):
    """The JSON file written beside ``FILE.onnx``: ``FILE.json``."""
    return Path(onnx_path).with_suffix(".json")


def _out_path(args):
    out = Path(args.out)
    if out.suffix != ".onnx":
        raise CLIError(f"--out {out}: expected a file name ending in .onnx")
    if out.is_dir():
        raise CLIError(f"--out {out}: is a directory, expected a file name ending in .onnx")
    return out


def _write(model, args, out, sidecar):
    from ..export import to_onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        to_onnx(model, out)
    except ImportError as e:
        raise CLIError(str(e)) from None
    except (ValueError, TypeError) as e:
        raise CLIError(f"--model {args.model}: cannot export: {e}") from None
    head = {"format": FORMAT, "format_version": 1, "task": args.task,
            "xprnn_version": __version__, "onnx": out.name, "model_class": type(model).__name__,
            "config": model.config}
    path = sidecar_path(out)
    path.write_text(json.dumps({**head, **sidecar}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1024:,.0f} KiB) and {path}")
    return 0


def _word_rules(rule, stopwords):
    """The rules of :func:`xprnn.text.tokenize_words` with ``rule``, spelled out for a server
    in any language."""
    from ..text._unicode import APOSTROPHES, TOKEN_PATTERN
    from ..text.vocabulary import _BREAK, _NOT_LETTER

    if rule == "ascii":
        return {"level": "word", "rule": "ascii",
                "steps": ["lowercase",
                          "replace each match of break_pattern (case-insensitive) by a space",
                          "delete each match of drop_pattern", "split on whitespace",
                          "drop the words in stopwords"],
                "break_pattern": _BREAK.pattern, "drop_pattern": _NOT_LETTER.pattern,
                "stopwords": stopwords}
    return {"level": "word", "rule": "unicode",
            "steps": ["replace each match of break_pattern (case-insensitive) by a space",
                      "case-fold (full Unicode case folding, e.g. Python's str.casefold)",
                      "normalize to NFC", "delete each match of drop_pattern (apostrophes)",
                      "take each match of token_pattern as a word (a run of letters, numbers "
                      "and combining marks, Unicode categories L, N and M; anything else, "
                      "underscore included, separates words)",
                      "drop the words in stopwords"],
            "break_pattern": _BREAK.pattern, "drop_pattern": APOSTROPHES.pattern,
            "token_pattern": TOKEN_PATTERN, "stopwords": stopwords}


def export_sentiment(args):
    from ..text.vocabulary import english_stopwords
    from ._sentiment_data import word_rule

    model = c.load_model(args, "sentiment")
    out = _out_path(args)
    meta = model.meta
    vocab = check_meta(model, args.model, "sentiment")  # the checks of eval and predict
    stop = meta["tokenizer"].get("stopwords")
    stopwords = sorted(english_stopwords()) if stop == "english" else sorted(stop or [])
    tokenizer = _word_rules(word_rule(meta), stopwords)
    if (Path(args.model) / _blend.PARTNER).exists():
        cell = model.config["cell"]
        try:
            partner = _blend.load(args.model, model, args)
        except CLIError:  # damaged: eval and predict refuse it; the graph does not need it
            partner = None
        what = (f"classifies with its bag-of-n-grams model alone (the {cell} did not add to it "
                "in training)" if partner is not None and partner.a == 0 else
                f"blends the {cell} with a bag-of-n-grams model")
        warn(f"{args.model} {what} ({args.model}/{_blend.PARTNER}); the ONNX graph holds the "
             f"{cell} alone, as 'sentiment eval --no-blend' scores it")
    return _write(model, args, out, {
        "inputs": {"ids": "int64 (batch, time): token ids, each row right-padded with pad_id",
                   "lengths": "int64 (batch,): the valid tokens of each row, 1 to time"},
        "outputs": {"probabilities": "float32 (batch, classes), in the order of classes"},
        "classes": meta["classes"], "tokenizer": tokenizer, "vocab": vocab.tokens,
        "pad_id": vocab.pad_id, "unk_id": vocab.unk_id,
        "empty_text": "a text with no tokens left is read as [unk_id]",
        "max_len": meta["max_len"], "truncate": meta["truncate"],
        "truncate_modes": {"head": "keep the first max_len tokens",
                           "tail": "keep the last max_len tokens",
                           "both": "keep the first ceil(max_len/2) and the last floor(max_len/2)"},
    })


def export_lm(args):
    model = c.load_model(args, "lm")
    out = _out_path(args)
    vocab = check_meta(model, args.model, "lm")  # the checks of generate
    level, lowercase = model.meta["tokenizer"]["level"], model.meta["tokenizer"]["lowercase"]
    cfg = model.config
    names = ["h0", "c0"] if cfg["cell"] == "lstm" else ["h0"]
    shape = [cfg["num_layers"], "batch", cfg["hidden_size"]]
    dims = f"(layers={shape[0]}, batch, hidden={shape[2]})"
    return _write(model, args, out, {
        "inputs": {"ids": "int64 (batch, time): token ids (a prompt, then one token a step)",
                   **{n: f"float32 {dims}: the state, zeros to start" for n in names}},
        "outputs": {"logits": "float32 (batch, time, vocab): next-token scores",
                    **{f"{n[0]}_n": f"float32 {dims}: the state to feed back"
                       for n in names}},
        "state": {"inputs": names, "outputs": [f"{n[0]}_n" for n in names], "shape": shape},
        "tokenizer": {"level": level, "lowercase": lowercase,
                      "split": "characters" if level == "char" else "whitespace",
                      "join": "" if level == "char" else " "},
        "vocab": vocab.tokens, "unk_id": vocab.unk_id, "pad_id": vocab.pad_id,
        "default_prompt": next(t for t in vocab.tokens if t != vocab.unk_token),
    })
