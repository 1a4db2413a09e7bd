"""Building ONNX graphs: a small collector of nodes and initializers, and xprnn's recurrent
stack as ONNX's native ``RNN``, ``LSTM`` and ``GRU`` operators.

The operators hold the same maths as xprnn's cells but lay the gate blocks out differently:

============  ================================  ===============================
cell          xprnn (PyTorch) rows              ONNX rows
============  ================================  ===============================
``lstm``      ``i, f, g, o``                    ``i, o, f, c`` (``c`` is ``g``)
``gru``       ``r, z, n``                       ``z, r, h`` (``h`` is ``n``)
``rnn``       one block                         one block, ``Tanh``
``rnn_relu``  one block                         one block, ``Relu``
============  ================================  ===============================

xprnn's GRU applies the reset gate after the recurrent product, ``n = tanh(x W_in^T + b_in +
r * (h W_hn^T + b_hn))``, which is ONNX's ``linear_before_reset=1``. ONNX stacks the directions
along a first axis of size ``num_directions`` and puts both biases in one row, ``[Wb, Rb]``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CELLS", "Graph", "import_onnx", "reorder_gates", "recurrent"]

# cell name -> (ONNX operator, xprnn's gate blocks in ONNX's order, activations of one direction)
CELLS = {
    "rnn": ("RNN", (0,), ("Tanh",)),
    "rnn_relu": ("RNN", (0,), ("Relu",)),
    "lstm": ("LSTM", (0, 3, 1, 2), ("Sigmoid", "Tanh", "Tanh")),  # i f g o -> i o f c
    "gru": ("GRU", (1, 0, 2), ("Sigmoid", "Tanh")),  # r z n -> z r h
}


def import_onnx():
    """The ``onnx`` package, or an ``ImportError`` that says how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(
            "exporting to ONNX needs the onnx package: pip install 'xprnn[onnx]' (or pip "
            f"install onnx); importing it failed: {e}"
        ) from None
    return onnx


def reorder_gates(a, blocks):
    """The gate blocks of ``a`` (``(G*H, ...)``, xprnn's order) in the order ``blocks``."""
    H = a.shape[0] // len(blocks)
    return np.concatenate([a[k * H : (k + 1) * H] for k in blocks], axis=0)


class Graph:
    """Nodes and initializers of one ONNX graph, with fresh names for intermediate values."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.initializers, self._count = onnx, [], [], 0

    def fresh(self, base):
        self._count += 1
        return f"{base}_{self._count}"

    def weight(self, name, array):
        """An initializer called ``name`` holding the NumPy ``array``; returns ``name``."""
        tensor = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
        self.initializers.append(tensor)
        return name

    def const(self, values, dtype=np.int64):
        """A small constant initializer (indices, shapes, axes)."""
        return self.weight(self.fresh("const"), np.asarray(values, dtype=dtype))

    def op(self, op_type, inputs, outputs=1, **attrs):
        """Append one node; returns its output name, or the list of names for ``outputs > 1``
        (``outputs`` may also be the list of names to give them)."""
        if isinstance(outputs, int):
            outputs = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), list(outputs),
                                                     name=self.fresh(op_type), **attrs))
        return outputs[0] if len(outputs) == 1 else list(outputs)


def recurrent(g, cell, params, config, x, *, seq_lens="", h0=None, c0=None):
    """xprnn's ``Recurrent`` (batch-first models' ``rnn``) as ONNX nodes, layer by layer.

    Parameters
    ----------
    g : Graph
    cell : str
        A key of ``CELLS``.
    params : dict of str to NumPy float32 arrays
        The model's state dict (``rnn.weight_ih_l0``, ...).
    config : dict
        ``hidden_size``, ``num_layers`` and ``bidirectional``.
    x : str
        The name of a ``(T, B, I)`` float tensor (time-major, as the ONNX operators want).
    seq_lens : str
        The name of an int32 ``(B,)`` tensor of valid steps per row, or ``""`` (all valid).
        Past each row's length the ONNX operators keep the state and the reverse direction
        starts at the row's last valid step, as xprnn does.
    h0, c0 : str, optional
        Names of the initial states ``(num_layers * num_directions, B, H)``; zeros if omitted.

    Returns
    -------
    out : str
        ``(T, B, D*H)``, both directions concatenated as in xprnn.
    h_n, c_n : list of str
        Each layer's final states ``(D, B, H)`` (``c_n`` empty but for the LSTM).
    """
    op, blocks, acts = CELLS[cell]
    H, L = config["hidden_size"], config["num_layers"]
    D = 2 if config.get("bidirectional") else 1
    sfxs = ("", "_reverse")[:D]
    attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward",
             "activations": list(acts) * D}
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    h_n, c_n = [], []
    for layer in range(L):
        def stacked(kind, layer=layer):
            return np.stack([reorder_gates(params[f"rnn.{kind}_l{layer}{s}"], blocks)
                             for s in sfxs])

        name = f"rnn.l{layer}"
        inputs = [x, g.weight(f"{name}.W", stacked("weight_ih")),
                  g.weight(f"{name}.R", stacked("weight_hh")),
                  g.weight(f"{name}.B", np.concatenate([stacked("bias_ih"), stacked("bias_hh")],
                                                       axis=1)),
                  seq_lens]
        for state in (h0, c0) if op == "LSTM" else (h0,):
            if state is None:
                inputs.append("")
            else:  # this layer's rows of the (L*D, B, H) state
                inputs.append(g.op("Slice", [state, g.const([layer * D]),
                                             g.const([(layer + 1) * D])]))
        while inputs[-1] == "":  # trailing optional inputs are left out
            inputs.pop()
        Y, *finals = g.op(op, inputs, 3 if op == "LSTM" else 2, **attrs)
        h_n.append(finals[0])
        c_n.extend(finals[1:])
        # Y is (T, D, B, H); xprnn's next layer (and its output) read (T, B, D*H)
        x = g.op("Reshape", [g.op("Transpose", [Y], perm=[0, 2, 1, 3]), g.const([0, 0, -1])])
    return x, h_n, c_n
