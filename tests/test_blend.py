"""The saved classifier of ``sentiment train``: the recurrent model blended with the
bag-of-n-grams baseline (``cli/_blend.py``): the blend against its definition in probability
space, the weights against a brute-force search, and the life of the partner on disk (written
with the model, removed with a new run, refused clearly when damaged, ignored by --no-blend)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_cli import TINY, _json_lines, _reviews, _run, _write_csv
from xprnn.cli import _blend


@pytest.fixture(autouse=True)
def _numpy_only(backend):
    if backend != "numpy":
        pytest.skip("host maths and the command line: runs under --backend numpy")


def _log_p(rng, n, c, scale):
    z = rng.standard_normal((n, c)) * scale
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_mix_is_the_normalised_product_of_powers():
    rng = np.random.default_rng(0)
    lp, lq = _log_p(rng, 7, 3, 2.0), _log_p(rng, 7, 3, 1.0)
    for a, b in ((0.0, 1.0), (0.3, 1.7), (2.0, 0.0), (1.0, 1.0)):
        want = np.exp(lp) ** a * np.exp(lq) ** b
        want /= want.sum(axis=1, keepdims=True)
        assert np.allclose(np.exp(_blend.mix(lp, lq, a, b)), want, rtol=1e-12, atol=0)


def test_choose_finds_the_brute_force_minimum():
    rng = np.random.default_rng(1)
    n = 60
    y = rng.integers(0, 2, size=n)
    # two noisy experts: each right about 70% of the time, over- and under-confident
    lp = np.where(np.eye(2)[y] == 1, 1.0, -1.0) * np.where(rng.random(n) < 0.7, 1, -1)[:, None]
    lq = np.where(np.eye(2)[y] == 1, 1.0, -1.0) * np.where(rng.random(n) < 0.7, 1, -1)[:, None]
    lp, lq = _blend.log_softmax(3.0 * lp), _blend.log_softmax(0.2 * lq)

    def nll(a, b):
        return -np.mean(_blend.mix(lp, lq, a, b)[np.arange(n), y])

    a, b = _blend.choose(lp, lq, y)
    grid = np.arange(0.0, 4.0001, 0.02)
    brute = min(nll(s, t) for s in grid for t in grid)
    assert nll(a, b) <= brute + 1e-12
    assert 0 <= a <= 4 and 0 <= b <= 4 and b > a  # the calm expert is trusted more


def _experts(rng, n, noise):
    """Labels, an n-gram-like expert right about 75% of the time, and a recurrent-like one
    that knows the label through ``(1 - noise)`` of its logit and is random otherwise."""
    y = rng.integers(0, 2, size=n)
    sign = np.where(rng.random(n) < 0.75, 1.0, -1.0)
    lq = _blend.log_softmax(np.where(np.eye(2)[y] == 1, 1.0, -1.0) * sign[:, None])
    z = (1 - noise) * 2.0 * np.eye(2)[y] + noise * 2.0 * rng.standard_normal((n, 2))
    return y, lq, _blend.log_softmax(z)


def test_decide_blends_a_model_that_adds_to_the_ngrams():
    y, lq, lp = _experts(np.random.default_rng(3), 300, noise=0.5)
    d = _blend.decide(lp, lq, y)
    assert d.used and (d.a, d.b) == _blend.choose(lp, lq, y) and d.a > 0
    # the gain, computed here from the probabilities: blend p^a q^b / Z against q^b0 / Z0
    b0 = _blend.choose(lp, lq, y, recurrent=False)[1]
    p, q = np.exp(lp), np.exp(lq)
    blend = p ** d.a * q ** d.b
    alone = q ** b0
    rows = np.arange(y.size)
    gain = np.log(blend[rows, y] / blend.sum(axis=1)) - np.log(alone[rows, y] / alone.sum(axis=1))
    assert d.gain == pytest.approx(gain.mean(), rel=1e-9)
    assert d.se == pytest.approx(gain.std(ddof=1) / np.sqrt(y.size), rel=1e-9)
    assert d.gain >= _blend.MIN_Z * d.se


def test_decide_keeps_the_ngrams_alone_without_evidence():
    rng = np.random.default_rng(4)
    y, lq, _ = _experts(rng, 200, noise=0.0)
    lp = _blend.log_softmax(rng.standard_normal((200, 2)))  # knows nothing of the labels
    free = _blend.choose(lp, lq, y)
    d = _blend.decide(lp, lq, y)
    assert not d.used and d.a == 0.0 and d.b == _blend.choose(lp, lq, y, recurrent=False)[1]
    assert d.gain <= 0 or d.gain < _blend.MIN_Z * d.se
    # z = 0: the free weights whenever they raise the likelihood at all (here: by chance)
    forced = _blend.decide(lp, lq, y, z=0.0)
    assert forced.used == (free[0] > 0 and forced.gain > 0)
    assert (forced.a, forced.b) == (free if forced.used else (0.0, d.b))
    # the same expert, decisive, with ten times the rows: now it earns its place
    y, lq, lp = _experts(rng, 2000, noise=0.3)
    assert _blend.decide(lp, lq, y).used


def test_decide_with_one_validation_row_blends_only_at_z_0():
    lq = _blend.log_softmax(np.array([[0.2, -0.2]]))
    lp = _blend.log_softmax(np.array([[3.0, -3.0]]))  # sure and right
    y = np.array([0])
    d = _blend.decide(lp, lq, y)
    assert d.se == np.inf and d.gain > 0 and not d.used and d.a == 0.0
    assert _blend.decide(lp, lq, y, z=0.0).used


def test_choose_gives_no_weight_to_a_model_that_knows_nothing():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, size=40)
    flat = np.full((40, 3), -np.log(3.0))  # uniform: any weight gives the same blend
    lq = _blend.log_softmax(np.eye(3)[y] * 2.0 + rng.standard_normal((40, 3)) * 0.1)
    a, b = _blend.choose(flat, lq, y)
    assert a == 0.0 and b > 1.0  # ties go to the smaller weight; a sure expert is sharpened


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path):
    return (_write_csv(tmp_path / "train.csv", _reviews(200, 0)),
            _write_csv(tmp_path / "test.csv", _reviews(60, 1)))


def _train(capsys, data, out, *extra):
    code, stdout, err = _run(capsys, "sentiment", "train", "--data", data[0], "--test", data[1],
                             "--out", out, "--json", *TINY, *extra)
    assert code == 0, err
    (r,) = _json_lines(stdout)
    return r


@pytest.fixture
def blended(monkeypatch):
    """Weights as a recurrent model that adds to the n-grams would get: these test data are
    told by single words, so the baseline knows everything and a real GRU never earns a weight
    (``decide`` itself is tested above)."""
    choice = _blend.Choice(0.6, 0.9, 0.05, 0.01, True)
    monkeypatch.setattr(_blend, "decide", lambda lp, lq, y, z=_blend.MIN_Z: choice)
    return choice


def test_blend_on_validation_and_its_numbers(tmp_path, data, capsys, blended):
    out = tmp_path / "m"
    r = _train(capsys, data, out)
    m = r["blend"]
    assert set(m) == {"recurrent_weight", "ngram_weight", "recurrent_used", "valid_gain",
                      "valid_gain_se", "z", "valid_accuracy", "valid_loss",
                      "recurrent_valid_accuracy", "recurrent_test_accuracy",
                      "recurrent_test_loss"}
    assert (m["recurrent_weight"], m["ngram_weight"], m["valid_gain"], m["valid_gain_se"]) == (
        0.6, 0.9, 0.05, 0.01) and m["recurrent_used"]
    assert (out / "ngrams" / "model.safetensors").is_file()
    # eval scores the blend by default and the GRU alone with --no-blend: train's own numbers
    code, stdout, _ = _run(capsys, "sentiment", "eval", "--model", out, "--data", data[1],
                           "--json")
    (e,) = _json_lines(stdout)
    assert code == 0 and e["blended"] and e["accuracy"] == r["test_accuracy"]
    assert e["recurrent_accuracy"] == m["recurrent_test_accuracy"]
    code, stdout, _ = _run(capsys, "sentiment", "eval", "--model", out, "--data", data[1],
                           "--json", "--no-blend")
    (e,) = _json_lines(stdout)
    assert not e["blended"] and e["accuracy"] == m["recurrent_test_accuracy"]
    assert e["loss"] == pytest.approx(m["recurrent_test_loss"], rel=1e-12)
    # the console says what the saved model is
    code, stdout, _ = _run(capsys, "sentiment", "train", "--data", data[0], "--test", data[1],
                           "--out", out, "--force", *TINY)
    assert code == 0 and "the gru blended with the bag-of-words baseline (weights 0.6 and 0.9, " \
        "chosen on validation: log-likelihood +0.0500 +- 0.0100 per validation text)" in stdout
    assert "(--no-blend keeps it alone)" in stdout


def test_without_evidence_the_saved_classifier_is_the_baseline(tmp_path, data, capsys):
    out = tmp_path / "m"
    r = _train(capsys, data, out, "--blend-z", "1000")  # a bar no model clears
    m = r["blend"]
    assert not m["recurrent_used"] and m["recurrent_weight"] == 0.0 and m["z"] == 1000
    assert m["valid_gain"] <= 0 or m["valid_gain"] < 1000 * m["valid_gain_se"]
    assert json.loads((out / "ngrams" / "config.json").read_text())["meta"]["weights"] == [
        0.0, m["ngram_weight"]]
    # the n-gram model alone, its probabilities sharpened or softened by b: the baseline's
    # predictions, so its test accuracy
    assert r["test_accuracy"] == r["baseline"]["test_accuracy"]
    code, stdout, _ = _run(capsys, "sentiment", "eval", "--model", out, "--data", data[1])
    assert code == 0 and "(its bag-of-n-grams model alone: the gru did not add to it" in stdout
    code, stdout, _ = _run(capsys, "sentiment", "train", "--data", data[0], "--test", data[1],
                           "--out", out, "--force", "--blend-z", "1000", *TINY)
    assert code == 0 and "the bag-of-words baseline alone: the gru did not add to it on the " \
        "validation rows (log-likelihood " in stdout
    assert "under 1000 standard errors; --blend-z sets the bar" in stdout
    assert "the model equals the bag-of-words baseline's test accuracy " in stdout
    assert "beat the bag-of-words baseline" not in stdout  # it is the baseline


@pytest.mark.parametrize("extra, said", [
    (["--no-blend"], None), (["--no-baseline"], None),
    (["--valid-fraction", "0"], "not blended with the baseline: choosing the blend needs "
                                "validation rows")])
def test_a_new_run_without_a_blend_removes_the_old_partner(tmp_path, data, capsys, extra, said):
    out = tmp_path / "m"
    _train(capsys, data, out)
    assert (out / "ngrams").is_dir()
    code, stdout, err = _run(capsys, "sentiment", "train", "--data", data[0], "--test", data[1],
                             "--out", out, "--force", *TINY, *extra)
    assert code == 0, err
    assert not (out / "ngrams").exists()  # it belonged to the model this run replaced
    assert (said in stdout) if said else "blended" not in stdout
    code, stdout, _ = _run(capsys, "sentiment", "eval", "--model", out, "--data", data[1],
                           "--json")
    assert code == 0 and not json.loads(stdout)["blended"]


def test_a_damaged_partner_is_a_clear_error_and_no_blend_still_works(tmp_path, data, capsys):
    out = tmp_path / "m"
    _train(capsys, data, out)
    (out / "ngrams" / "model.safetensors").write_bytes(b"\0" * 100)
    for command in (["eval", "--data", data[1]], ["predict", "a great film"]):
        code, _, err = _run(capsys, "sentiment", command[0], "--model", out, *command[1:])
        assert code == 2 and err.startswith(f"xprnn: error: --model {out}: its n-gram model "
                                             f"{out / 'ngrams'}: ")
        assert "--no-blend uses the recurrent model alone" in err and "Traceback" not in err
        code, stdout, err = _run(capsys, "sentiment", command[0], "--model", out,
                                 *command[1:], "--no-blend")
        assert code == 0 and stdout, err


def test_a_partner_whose_table_does_not_fit_its_weights_is_refused(tmp_path, data, capsys):
    from xprnn.checkpoint import load, save

    out = tmp_path / "m"
    _train(capsys, data, out)
    bow = load(out / "ngrams")
    bow.meta["ngrams"] = bow.meta["ngrams"][:-1]
    save(bow, out / "ngrams")
    code, _, err = _run(capsys, "sentiment", "eval", "--model", out, "--data", data[1])
    assert code == 2 and "do not fit its weights" in err
    bow.meta = {**bow.meta, "weights": [1.0, -1.0]}
    save(bow, out / "ngrams")
    code, _, err = _run(capsys, "sentiment", "eval", "--model", out, "--data", data[1])
    assert code == 2 and "two non-negative weights" in err


def _full_disk_on(monkeypatch, part):
    """Every safetensors write under a path containing ``part`` fails as on a full disk."""
    import errno

    from xprnn.checkpoint import _io

    real = _io.write_safetensors

    def write(tensors, path, metadata):
        if part in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(tensors, path, metadata)

    monkeypatch.setattr("xprnn.checkpoint.write_safetensors", write)


def test_a_partner_that_cannot_be_saved_leaves_the_model_alone_and_says_so(tmp_path, data,
                                                                          capsys, monkeypatch):
    out = tmp_path / "m"
    (out / "ngrams").mkdir(parents=True)
    (out / "ngrams" / "stale.txt").write_text("from an earlier run")
    _full_disk_on(monkeypatch, "ngrams")
    code, _, err = _run(capsys, "sentiment", "train", "--data", data[0], "--out", out, *TINY)
    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"xprnn: error: --out {out}: the bag-of-words model to blend with "
                          f"cannot be saved in {out / 'ngrams'} (No space left on device); ")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "history.json", "learning_curve.png", "model.safetensors",
        "training_state.safetensors"]  # the GRU whole, no partner, no temporary file
    code, stdout, _ = _run(capsys, "sentiment", "eval", "--model", out, "--data", data[1],
                           "--json")
    assert code == 0 and not json.loads(stdout)["blended"]


def test_a_model_that_cannot_be_saved_is_a_clear_error(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "m"
    _full_disk_on(monkeypatch, "model.safetensors")
    code, _, err = _run(capsys, "sentiment", "train", "--data", data[0], "--out", out, *TINY)
    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"xprnn: error: --out {out}: cannot save there (No space left on "
                          "device: ")
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_export_says_when_the_saved_classifier_is_the_ngrams_alone(tmp_path, data, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "m"
    _train(capsys, data, out, "--blend-z", "1000")
    code, _, err = _run(capsys, "sentiment", "export", "--model", out, "--out",
                        tmp_path / "m.onnx")
    assert code == 0 and "classifies with its bag-of-n-grams model alone (the gru did not add " \
        "to it in training)" in err and "the ONNX graph holds the gru alone" in err
    # a damaged partner does not stop the export of the recurrent model, which does not need it
    (out / "ngrams" / "model.safetensors").write_bytes(b"\0" * 100)
    code, _, err = _run(capsys, "sentiment", "export", "--model", out, "--out",
                        tmp_path / "m2.onnx")
    assert code == 0 and "blends the gru with a bag-of-n-grams model" in err
    assert (tmp_path / "m2.onnx").is_file()
