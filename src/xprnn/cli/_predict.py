"""``xprnn sentiment predict``: the label and probability of every text, from the command line,
a file of any size or standard input, read in chunks (``cli/_rounds.py``, shared across the
processes under ``mpiexec``) and written in input order to standard output or, atomically, to
``--output``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from . import _atomic as atomic
from . import _blend, _checks, _rounds
from . import _common as c
from . import _sentiment_data as sd
from . import _team as team
from ._common import CLIError

__all__ = ["add_parser", "predict"]

_TABLE_SUFFIXES = (".csv", ".tsv", ".tab")
_SHOWN = 5  # skipped lines named in the warning
_SHORT = 60  # characters of a text shown on a terminal
_SIGPIPE_STATUS = 141  # 128 + SIGPIPE: the status of `cat` in `cat big | head`


def add_parser(tasks):
    r = tasks.add_parser(
        "predict", help="label and probability for each text, from arguments, a file or stdin",
        description="Classify texts given as arguments, or every line of --input (a text file, "
        "- for standard input; a CSV/TSV file: the --text-column of each row). The input is "
        "read in chunks, so its size does not matter; under mpiexec the processes share the "
        "chunks. One line per text, in input order: label, probability and text separated by "
        "tabs (the text shortened to 60 characters on a terminal), or a JSON object with "
        "--json. Blank texts are skipped with a warning naming their lines.")
    r.add_argument("--model", required=True, metavar="DIR",
                   help="directory written by sentiment train")
    r.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    r.add_argument("-i", "--input", metavar="PATH",
                   help="file to classify, one text per line, or a CSV/TSV file (.csv/.tsv, "
                        "or any file with a CSV option); - for standard input; gzip-compressed "
                        "input is read as it is")
    r.add_argument("-o", "--output", metavar="PATH",
                   help="write the results here instead of standard output (whole or not at "
                        "all: written to a temporary file in the same folder and renamed at "
                        "the end)")
    r.add_argument("--json", action="store_true",
                   help="one JSON object per text (text, label, probability, probabilities "
                        "and line: the input line where the text starts, or the argument's "
                        "position)")
    r.add_argument("--chunk-size", type=c.positive_int, default=1000, metavar="N",
                   help="texts read, classified and written at a time (the memory used grows "
                        "with it, not with the input)")
    r.add_argument("--batch-size", type=c.positive_int, default=64, metavar="N",
                   help="texts per forward pass (texts of a chunk are batched by length)")
    _blend.add_option(r, "classify with the recurrent model alone, without the bag-of-n-grams "
                         "model it was blended with")
    c.add_progress_options(r)
    sd.add_csv_options(r)
    for action in r._actions:  # eval's CSV options, but predict reads no labels
        if action.dest == "label_column":
            action.help = argparse.SUPPRESS
    c.add_backend_options(r)
    r.set_defaults(run=predict)


# -- input ---------------------------------------------------------------------------------------


def _is_table(path, args):
    name = Path(path).name.lower().removesuffix(".gz")
    return name.endswith(_TABLE_SUFFIXES) or any(
        v is not None for v in (args.text_column, args.delimiter, args.quoting)) \
        or args.no_header


def _check_input(args):
    """The input's errors, before any work."""
    if args.texts and args.input is not None:
        raise CLIError("give texts as arguments or --input, not both")
    if not args.texts and args.input is None:
        raise CLIError("nothing to classify: give texts as arguments, or --input FILE (- for "
                       "standard input)")
    if args.label_column is not None:
        raise CLIError("--label-column: predict reads texts only (sentiment eval measures "
                       "labelled data)")
    table = args.input is not None and _is_table(args.input, args)
    given = [o for o, v in (("--text-column", args.text_column), ("--delimiter", args.delimiter),
                            ("--quoting", args.quoting), ("--no-header", args.no_header),
                            ("--skip-bad-rows", args.skip_bad_rows)) if v]
    if given and not table:
        what = "texts given as arguments" if args.texts else f"{args.input}, one text per line"
        raise CLIError(f"{', '.join(given)} apply to CSV/TSV input, not to {what}")
    if args.no_header and not (args.text_column or "").isdigit():
        raise CLIError("--no-header needs --text-column as a 0-based column position, e.g. "
                       "--text-column 0")
    return table


def _open(args, table, stack):
    """``(source or None, name, iterable of (line, text))`` of the input, read as it goes;
    ``stack`` (an ``ExitStack``) closes what is opened."""
    from ..text.streaming import TextSource, iter_column

    if args.texts:
        return None, "arguments", list(enumerate(args.texts, 1))
    stdin = args.input == "-"
    name = "<stdin>" if stdin else args.input
    try:
        src = stack.enter_context(TextSource(sys.stdin.buffer if stdin else args.input,
                                             args.encoding, name))
    except ValueError as e:
        raise CLIError(f"--input: {e}") from None
    if not table:
        return src, name, src.lines()
    delimiter = "\t" if args.delimiter in ("\\t", "tab", "TAB") else args.delimiter
    text_column = args.text_column or "review"
    rows = iter_column(src, int(text_column) if text_column.isdigit() else text_column,
                       delimiter=delimiter, header=not args.no_header, quoting=args.quoting,
                       on_bad_rows="skip" if args.skip_bad_rows else "error",
                       allow_empty=True, name=name)
    return src, name, rows


def _checked(items):
    """``items`` with a reader's ``ValueError`` as a ``CLIError``."""
    try:
        yield from items
    except ValueError as e:
        raise CLIError(f"--input: {e}") from None


class _Blanks:
    """Leaves blank texts out, remembering their lines for the warning."""

    def __init__(self):
        self.count, self.lines = 0, []

    def filter(self, items):
        for line, text in items:
            if text.strip():
                yield line, text
            else:
                self.count += 1
                if len(self.lines) < _SHOWN:
                    self.lines.append(line)

    def warn(self, name, written):
        if not self.count:
            return
        where = "argument(s)" if name == "arguments" else f"{name}: line(s)"
        more = f" and {self.count - len(self.lines)} more" if self.count > len(self.lines) \
            else ""
        _checks.warn(f"skipped {self.count} blank text(s) ({where} "
                     f"{', '.join(map(str, self.lines))}{more}): nothing to classify; "
                     f"{written} prediction(s) for {written + self.count} text(s)")


# -- output --------------------------------------------------------------------------------------


def _writer(f, classes, as_json, short, where):
    import numpy as np

    def write(chunk, proba):
        lines = []
        for (line, text), p in zip(chunk, proba, strict=True):
            k = int(np.argmax(p))
            if as_json:
                lines.append(json.dumps(c._plain({
                    "text": text, "label": classes[k], "probability": float(p[k]),
                    "probabilities": dict(zip(classes, p.tolist(), strict=True)),
                    "line": line}), allow_nan=False))
            else:
                flat = " ".join(text.split()) if any(ch in text for ch in "\t\r\n") else text
                if short and len(flat) > _SHORT:
                    flat = flat[:_SHORT - 3] + "..."
                lines.append(f"{classes[k]}\t{p[k]:.3f}\t{flat}")
        try:
            f.write("\n".join(lines) + "\n")
        except BrokenPipeError:  # the reader has gone: predict stops quietly
            raise
        except OSError as e:
            raise CLIError(f"{where}: cannot be written ({e.strerror or e})") from None
        return len(lines)

    return write


# -- the command ---------------------------------------------------------------------------------


def predict(args):
    t0 = time.perf_counter()
    try:
        table = _check_input(args)
    except CLIError as e:  # the same in every process under mpiexec: nothing to abort
        e.everywhere = True
        raise
    me = team.current()
    lead = me is None or me.rank == 0
    if me is not None and args.input == "-":
        # MPICH's mpiexec forwards stdin to process 0 but gives up ("process reading stdin too
        # slowly") as soon as its pipe is full, which a reader of chunks at its own pace (and a
        # process still starting) leaves it
        raise CLIError("--input -: under mpiexec, standard input cannot be read at the pace of "
                       "the work; give a file, a named pipe, or a command's output as "
                       "--input <(command)", everywhere=True)

    def load():
        model = c.load_model(args, "sentiment")
        vocab = _checks.check_meta(model, args.model, "sentiment")
        return model, vocab, _blend.load(args.model, model, args) if args.blend else None

    loaded, code = _rounds.agree(me, load)  # a model missing on one machine ends all alike
    if code is not None:
        return code
    model, vocab, partner = loaded
    meta = model.meta

    def classify(texts):
        return _rounds.classify(model, meta, vocab, texts, args.batch_size, partner)

    if not lead:
        return _rounds.Rounds(me).run(None, classify, None, chunk_size=args.chunk_size)
    blanks, written = _Blanks(), [0]
    rounds = _rounds.Rounds(me)
    try:
        name = _classify_all(args, table, rounds, classify, meta["classes"], blanks, written)
    except BrokenPipeError:  # the reader of stdout has gone (| head): stop quietly, as cat does
        if args.output is not None:
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # for the final flush
        return _SIGPIPE_STATUS
    blanks.warn(name, written[0])
    if written[0] == 0 and not blanks.count:
        _checks.warn(f"{name}: no texts to classify")
    if args.output is not None:
        seconds = time.perf_counter() - t0
        procs = f" with {me.size} processes" if me is not None else ""
        print(f"xprnn: wrote {written[0]:,} predictions to {args.output} in {seconds:.1f} s "
              f"({written[0] / max(seconds, 1e-9):,.0f} texts/s{procs})", file=sys.stderr)
    return 0


def _classify_all(args, table, rounds, classify, classes, blanks, written):
    """Process 0's part: open the output and the input, and run the rounds, writing what they
    classify; returns the input's name."""
    with atomic.sigterm_as_interrupt(), rounds, atomic.output(args.output) as f, \
            contextlib.ExitStack() as stack:
        src, name, items = _open(args, table, stack)
        bar = stack.enter_context(_bar(args, src, len(args.texts) if args.texts else None))
        write = _writer(f, classes, args.json, args.output is None and sys.stdout.isatty(),
                        "standard output" if args.output is None else f"--output {args.output}")

        def write_and_count(chunk, proba):
            written[0] += write(chunk, proba)
            bar.update((src.tell() if src is not None and src.size else written[0]) - bar.n)
            bar.set_postfix_str(f"{written[0]:,} texts", refresh=False)

        with _checks.reader_warnings("--input"):
            rounds.run(blanks.filter(_checked(items)), classify, write_and_count,
                       chunk_size=args.chunk_size)
    return name


def _bar(args, src, total):
    from tqdm import tqdm

    from . import _train as tc

    on = tc.progress_on(args)
    if src is not None and src.size:  # a file: bytes read, with a time left
        return tqdm(total=src.size, unit="B", unit_scale=True, unit_divisor=1024,
                    desc="predict", file=sys.stderr, disable=not on)
    return tqdm(total=total, unit=" texts", desc="predict", file=sys.stderr, disable=not on)
