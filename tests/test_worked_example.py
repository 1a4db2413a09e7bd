"""The blog's single RNN step (docs/worked-example.md), rebuilt with the public API.

The expected values are computed here with plain Python arithmetic (no NumPy, no xprnn), straight
from the blog's inputs; the blog's own printed figures are checked to be *wrong*, as the page says.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xprnn
from xprnn.backend import to_numpy

C = [0.2, 0.4, 0.6]
W_H = [[0.7, -0.1, 0.9], [-0.3, 0.6, -0.2], [0.4, 0.2, 0.5]]
B = [0.1, -0.2, 0.3]
W_O = [[0.3, -0.2, 0.1], [0.4, 0.2, 0.5], [-0.1, 0.6, 0.7], [0.2, 0.4, -0.3]]
B_O = [0.1, 0.2, -0.1, 0.3]
BLOG = {"z": [0.72, 0.06, 0.54], "h": [0.6200, 0.0599, 0.5010],
        "logits": [0.3999, 0.6068, 0.4560, 0.4639], "probs": [0.2412, 0.3199, 0.2187, 0.2202]}


def _by_hand():
    z = [sum(w * c for w, c in zip(row, C)) + b for row, b in zip(W_H, B)]
    h = [math.tanh(v) for v in z]
    logits = [sum(w * v for w, v in zip(row, h)) + b for row, b in zip(W_O, B_O)]
    e = [math.exp(v) for v in logits]
    probs = [v / sum(e) for v in e]
    return {"z": z, "h": h, "logits": logits, "probs": probs}


def test_worked_example(xp, device, asarray):
    rnn = xprnn.RNN(3, 3, dtype="float64", xp=xp, device=device).load_state_dict(
        {"weight_ih_l0": np.array(W_H), "weight_hh_l0": np.zeros((3, 3)),
         "bias_ih_l0": np.array(B), "bias_hh_l0": np.zeros(3)})
    head = xprnn.Linear(3, 4, dtype="float64", xp=xp, device=device).load_state_dict(
        {"weight": np.array(W_O), "bias": np.array(B_O)})
    h, _ = rnn(asarray(np.array([C])))
    logits = head(h)
    probs = xprnn.softmax(logits)
    ours = {"h": to_numpy(h)[0], "logits": to_numpy(logits)[0], "probs": to_numpy(probs)[0]}
    ours["z"] = np.arctanh(ours["h"])
    hand = _by_hand()
    for k in ("z", "h", "logits", "probs"):
        np.testing.assert_allclose(ours[k], hand[k], rtol=1e-12, atol=1e-12, err_msg=k)
    assert int(np.argmax(ours["probs"])) == 1
    np.testing.assert_allclose(hand["z"], [0.74, -0.14, 0.76], atol=1e-12)


@pytest.mark.parametrize("key", ["z", "h", "logits", "probs"])
def test_blog_printed_figures_are_wrong(key):
    assert not np.allclose(_by_hand()[key], BLOG[key], atol=5e-3)
