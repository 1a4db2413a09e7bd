"""``to_onnx``: a trained model as an ONNX graph, to serve it without Python's xprnn.

Two graphs, built with ``onnx.helper`` on the native recurrent operators (opset 17, IR version
8, which ONNX Runtime has read since 1.12):

- :class:`~xprnn.SequenceClassifier`: inputs ``ids`` (int64, ``(batch, time)``) and ``lengths``
  (int64, ``(batch,)``, each in ``[1, time]``), output ``probabilities`` (float32,
  ``(batch, num_classes)``). Padded steps give the same numbers as xprnn's ``lengths``: the
  state stops at each row's last valid step, the reverse direction starts there, ``mean`` and
  ``max`` pool over valid steps only, ``last`` takes the top layer's final states.
- :class:`~xprnn.LanguageModel`: inputs ``ids`` (int64, ``(batch, time)``) and the recurrent
  state ``h0`` (float32, ``(num_layers, batch, hidden_size)``, and ``c0`` for the LSTM); outputs
  ``logits`` (float32, ``(batch, time, vocab_size)``) and the state after the last step,
  ``h_n`` (and ``c_n``). Feed a prompt as one chunk, then one token at a time with the state
  carried over, as :meth:`~xprnn.LanguageModel.generate` does.

Weights come to the host once (:func:`xprnn.backend.to_numpy`) and are stored as float32;
dropout is left out, as in evaluation mode.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import cells
from .._version import __version__
from ..backend import to_numpy
from ..models import LanguageModel, SequenceClassifier
from ..nn.pooling import POOLINGS
from ._graph import CELLS, Graph, import_onnx, recurrent

__all__ = ["to_onnx", "OPSET", "IR_VERSION", "CELLS"]

OPSET = 17
IR_VERSION = 8  # that of onnx 1.12, which brought opset 17: older runtimes read it too


def _config(model):
    """The model's config, checked to describe a graph this module can build."""
    if not isinstance(model, (SequenceClassifier, LanguageModel)):
        raise TypeError("to_onnx expects an xprnn SequenceClassifier or LanguageModel, got "
                        f"{type(model).__qualname__}")
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise ValueError(f"model.config must be a dict, got {type(config).__name__}")
    need = ["vocab_size", "embedding_dim", "hidden_size", "cell", "num_layers"]
    if isinstance(model, SequenceClassifier):
        need += ["num_classes", "bidirectional", "pooling"]
    missing = [k for k in need if k not in config]
    if missing:
        raise ValueError(f"model.config lacks {missing}; is it an xprnn "
                         f"{type(model).__name__}'s config?")
    name = config["cell"]
    if name not in CELLS:
        raise ValueError(f"cell {name!r} has no ONNX operator; exportable cells are "
                         f"{sorted(CELLS)}")
    if getattr(getattr(model, "rnn", None), "cell", None) is not cells.get(name):
        raise ValueError(f"model.config says cell {name!r} but the model's recurrent layer "
                         "runs another cell")
    if isinstance(model, SequenceClassifier) and config["pooling"] not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {config['pooling']!r}")
    if any(getattr(model.rnn, "zoneout", ())):  # (recurrent dropout is off in evaluation)
        raise ValueError("zoneout mixes the previous state into every step in evaluation; ONNX's "
                         "recurrent operators have no such term, so the model cannot be exported")
    return config


def _expected_shapes(model, config):
    """``{name: shape}`` of every parameter the config implies."""
    c = config
    V, E, H, L = c["vocab_size"], c["embedding_dim"], c["hidden_size"], c["num_layers"]
    D = 2 if c.get("bidirectional") else 1
    shapes = {"embedding.weight": (V, E)}
    for layer in range(L):
        for sfx in ("", "_reverse")[:D]:
            width = E if layer == 0 else D * H
            shapes.update({f"rnn.{k}_l{layer}{sfx}": s
                           for k, s in cells.get(c["cell"]).parameters(width, H).items()})
    if isinstance(model, SequenceClassifier):
        shapes.update({"fc.weight": (c["num_classes"], D * H), "fc.bias": (c["num_classes"],)})
    else:
        shapes["fc.bias"] = (V,)
        if not c.get("tie_weights"):
            shapes["fc.weight"] = (V, H)
        elif E != H:
            raise ValueError(f"model.config ties the decoder to the embedding but "
                             f"embedding_dim {E} != hidden_size {H}")
    return {k: tuple(int(n) for n in s) for k, s in shapes.items()}


def _params(model, config):
    """The model's parameters as float32 NumPy arrays, checked against ``config``."""
    expected = _expected_shapes(model, config)
    params = {k: to_numpy(v) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    if missing or unexpected:
        raise ValueError(f"the model's parameters do not match its config {config}: missing "
                         f"{missing}, unexpected {unexpected}")
    for k, shape in expected.items():
        a = params[k]
        if tuple(a.shape) != shape:
            raise ValueError(f"parameter {k!r} has shape {tuple(a.shape)}, but the model's "
                             f"config implies {shape}")
        if a.dtype not in (np.float32, np.float64):
            raise ValueError(f"parameter {k!r} has dtype {a.dtype}, expected float32 or float64")
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ValueError(f"parameter {k!r} holds {bad} non-finite value(s) (NaN or inf); "
                             "did training diverge?")
        params[k] = a.astype(np.float32)
    return params


def _info(onnx, name, elem, shape):
    return onnx.helper.make_tensor_value_info(name, elem, shape)


def _embed(g, params):
    """``ids (B, T)`` -> time-major embeddings ``(T, B, E)``."""
    ids_t = g.op("Transpose", ["ids"], perm=[1, 0])
    return g.op("Gather", [g.weight("embedding.weight", params["embedding.weight"]), ids_t])


def _classifier(g, config, params):
    onnx = g.onnx
    F, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    C = config["num_classes"]
    seq_lens = g.op("Cast", ["lengths"], to=onnx.TensorProto.INT32)
    out, h_n, _ = recurrent(g, config["cell"], params, config, _embed(g, params),
                            seq_lens=seq_lens)
    how = config["pooling"]
    if how == "last":  # the top layer's final states, forward then reverse: (D, B, H) -> (B, D*H)
        pooled = g.op("Reshape", [g.op("Transpose", [h_n[-1]], perm=[1, 0, 2]),
                                  g.const([0, -1])])
    else:
        # valid[t, b] = t < lengths[b], (T, B, 1); the operators' outputs past a row's length are
        # not defined by the ONNX standard, so they are masked here rather than trusted
        T = g.op("Gather", [g.op("Shape", ["ids"]), g.const(1)])
        steps = g.op("Range", [g.const(0), T, g.const(1)])
        valid = g.op("Less", [g.op("Unsqueeze", [steps, g.const([1])]),
                              g.op("Unsqueeze", ["lengths", g.const([0])])])
        valid = g.op("Unsqueeze", [valid, g.const([2])])
        if how == "mean":
            total = g.op("ReduceSum", [g.op("Where", [valid, out, g.const(0.0, np.float32)]),
                                       g.const([0])], keepdims=0)
            n = g.op("Unsqueeze", [g.op("Cast", ["lengths"], to=F), g.const([1])])
            pooled = g.op("Div", [total, n])
        else:
            masked = g.op("Where", [valid, out, g.const(-np.inf, np.float32)])
            pooled = g.op("ReduceMax", [masked], axes=[0], keepdims=0)
    logits = g.op("Gemm", [pooled, g.weight("fc.weight", params["fc.weight"]),
                           g.weight("fc.bias", params["fc.bias"])], transB=1)
    g.op("Softmax", [logits], ["probabilities"], axis=-1)
    return ([_info(onnx, "ids", I64, ["batch", "time"]),
             _info(onnx, "lengths", I64, ["batch"])],
            [_info(onnx, "probabilities", F, ["batch", C])])


def _language_model(g, config, params):
    onnx = g.onnx
    F, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    V, H, L = config["vocab_size"], config["hidden_size"], config["num_layers"]
    lstm = config["cell"] == "lstm"
    out, h_n, c_n = recurrent(g, config["cell"], params, config, _embed(g, params),
                              h0="h0", c0="c0" if lstm else None)
    flat = g.op("Reshape", [g.op("Transpose", [out], perm=[1, 0, 2]), g.const([-1, H])])
    decoder = "embedding.weight" if config.get("tie_weights") else \
        g.weight("fc.weight", params["fc.weight"])
    logits = g.op("Gemm", [flat, decoder, g.weight("fc.bias", params["fc.bias"])], transB=1)
    shape = g.op("Concat", [g.op("Shape", ["ids"]), g.const([V])], axis=0)
    g.op("Reshape", [logits, shape], ["logits"])
    states = [("h0", "h_n", h_n)] + ([("c0", "c_n", c_n)] if lstm else [])
    for _, name, layers in states:
        g.op("Concat", layers, [name], axis=0)
    shape = [L, "batch", H]
    return ([_info(onnx, "ids", I64, ["batch", "time"])]
            + [_info(onnx, s, F, shape) for s, _, _ in states],
            [_info(onnx, "logits", F, ["batch", "time", V])]
            + [_info(onnx, n, F, shape) for _, n, _ in states])


def to_onnx(model, path=None):
    """Export a :class:`~xprnn.SequenceClassifier` or :class:`~xprnn.LanguageModel` to ONNX.

    Parameters
    ----------
    model : SequenceClassifier or LanguageModel
        On any backend and device, any cell of ``CELLS`` (``"rnn"``, ``"rnn_relu"``,
        ``"lstm"``, ``"gru"``), any number of layers; a classifier may be bidirectional and
        use any pooling. float64 models are exported as float32.
    path : str or os.PathLike, optional
        Where to write the ``.onnx`` file.

    Returns
    -------
    onnx.ModelProto
        The checked model (``onnx.checker.check_model``). Its graph's inputs and outputs are
        described in :mod:`xprnn.export.onnx`; its metadata holds ``xprnn_class`` and
        ``xprnn_config`` (JSON).

    Raises
    ------
    TypeError
        For anything but the two models.
    ValueError
        For a model that cannot be exported as it is: a cell without an ONNX operator, a config
        that does not match the parameters (names, shapes), non-finite weights.
    ImportError
        Without the ``onnx`` package (``pip install 'xprnn[onnx]'``).
    """
    config = _config(model)
    params = _params(model, config)
    onnx = import_onnx()
    g = Graph(onnx)
    build = _classifier if isinstance(model, SequenceClassifier) else _language_model
    inputs, outputs = build(g, config, params)
    kind = type(model).__name__
    graph = onnx.helper.make_graph(g.nodes, f"xprnn_{kind}", inputs, outputs, g.initializers)
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="xprnn", producer_version=__version__,
        doc_string=f"xprnn {kind} ({config['cell']}), exported by xprnn.export.to_onnx")
    onnx.helper.set_model_props(proto, {"xprnn_class": kind,
                                        "xprnn_config": json.dumps(config)})
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        onnx.save(proto, str(Path(path)))
    return proto
