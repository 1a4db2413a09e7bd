"""The commands behind ``docs/results.md`` (``benchmarks/results.py``, ``benchmarks/sweep.py``):
each one is a valid ``xprnn`` command line, so a renamed option fails here and not an hour into
a long run, and the language models' unlabelled text is written as documented."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from xprnn.cli import build_parser

from .test_readers import _imdb_folder, _imdb_tar

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", _BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results():
    return _module("results")


@pytest.fixture(scope="module")
def sweep():
    return _module("sweep")


def test_every_results_command_parses(results):
    parser = build_parser()
    runs = results.runs(Path("DATA"))
    assert {"imdb-blend", "imdb-lm-ss", "imdb-lm-eq", "imdb-ft-eq"} <= set(runs)
    for name, argv in runs.items():
        args = parser.parse_args(argv)  # argparse exits (SystemExit) on an unknown option
        assert args.json, name  # results.py reads the last line of stdout as JSON


def test_the_fine_tuning_starts_from_the_language_model_made_before_it(results):
    runs = results.runs(Path("DATA"))
    lm = runs["imdb-lm-eq"]
    ft = runs["imdb-ft-eq"]
    assert ft[ft.index("--init-from") + 1] == lm[lm.index("--out") + 1]
    assert lm[lm.index("--text") + 1] == results.TEXTS
    assert float(ft[ft.index("--max-minutes") + 1]) == results.EQ_FT_MINUTES


def test_every_sweep_configuration_parses(sweep):
    parser = build_parser()
    for name in sweep.CONFIGS:
        args = parser.parse_args(sweep.command(name, ("train.csv", "test.csv"), 3, "out"))
        assert (args.seed, args.out, args.json) == (3, "out", True), name


def test_the_seeds_table_pairs_each_seed_with_its_own_baseline(sweep):
    def rec(seed, acc, base, config="default"):
        r = {"set": "imdb-2k", "config": config, "test_accuracy": acc, "baseline": base,
             "recurrent": 0.7, "weights": [0.1, 1.0], "seconds": 1.0}
        return r if seed is None else {**r, "seed": seed}

    records = [rec(None, 0.856, 0.857), rec(1, 0.862, 0.860), rec(2, 0.851, 0.850),
               rec(3, 0.849, 0.849), rec(None, 0.9, 0.8, config="gru128")]  # one seed: no row
    rows = sweep.seeds_table(records).splitlines()
    assert len(rows) == 3
    # differences -0.1, +0.2, +0.1, 0 points: mean +0.05, two wins, a tie, a loss
    assert rows[2] == ("| imdb-2k | default | 4 | 0.8540 | 0.8545 | +0.05 (-0.10 to +0.20) | "
                       "2 / 1 / 1 |")
    assert sweep.seeds_table(records[:1]) == ""
    assert "0.856" in sweep.table(records) and "0.862" not in sweep.table(records)


def test_the_pretrained_configuration_needs_its_language_model(sweep, tmp_path, monkeypatch,
                                                               capsys):
    monkeypatch.setattr(sweep, "LM", tmp_path / "no-lm")
    with pytest.raises(SystemExit, match="results.py --only imdb-lm-ss"):
        sweep.main(["--sets", "imdb-2k", "--configs", "pretrained", "--data", str(tmp_path),
                    "--work", str(tmp_path / "work")])
    assert not (tmp_path / "work").exists()  # nothing written before the check


def test_the_unlabelled_text_is_one_training_review_per_line(results, tmp_path):
    tar = _imdb_tar(tmp_path, _imdb_folder(tmp_path / "data"))
    out = tmp_path / "pretrain" / "texts.txt"
    results.write_texts(tar, out)
    # the training split only, in read_imdb's order, HTML line breaks as spaces
    assert out.read_text(encoding="utf-8").split("\n") == [
        "Awful – truly.", "Dull.", "Great!", "Fine film.  Liked it."]
    assert [p.name for p in out.parent.iterdir()] == ["texts.txt"]  # no temporary file left
