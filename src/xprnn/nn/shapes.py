"""What a checkpoint's config implies, worked out before anything is built: every size an
integer in a sane range, and the name and shape of every parameter the config would create,
to compare with the shapes in the file's header (which safetensors gives without reading the
data). A forged config (a vocabulary of 25 million rows over a file of 100) is refused before
a single array is allocated.

Every module class of xprnn declares its shapes with a ``param_shapes(config)`` classmethod
(built from the helpers here); for a class defined elsewhere that declares none,
:func:`expected_shapes` returns ``None`` and the loader builds first and compares after.
"""

from __future__ import annotations

import inspect

from .. import cells

__all__ = ["expected_shapes", "arguments", "cell_arguments", "size", "flag", "linear_shapes",
           "embedding_shapes", "recurrent_shapes", "MAX_SIZE", "MAX_LAYERS"]

MAX_SIZE = 2**31 - 1  # any one dimension
MAX_LAYERS = 10_000


def arguments(init, config, **fixed):
    """``init``'s named arguments for ``config``, defaults filled in (``fixed`` wins); a
    ``ValueError`` for a config that is not a dict or lacks a required argument."""
    if not isinstance(config, dict):
        raise ValueError(f"config must be a JSON object, got {type(config).__name__}")
    out = {}
    for p in inspect.signature(init).parameters.values():
        if p.name == "self" or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if p.name in fixed:
            out[p.name] = fixed[p.name]
        elif p.name in config:
            out[p.name] = config[p.name]
        elif p.default is not p.empty:
            out[p.name] = p.default
        else:
            raise ValueError(f"config lacks {p.name!r}")
    return out


def cell_arguments(cls, init, config):
    """:func:`arguments` of a recurrent class, with the cell its class fixes (``_cell_of``, as
    the torch-named classes have) filled in."""
    cell = getattr(cls, "_cell_of", lambda config: None)(config)
    return arguments(init, config, **({} if cell is None else {"cell": cell}))


def size(args, key, high=MAX_SIZE, low=1):
    """``args[key]`` checked to be an integer in ``[low, high]``."""
    v = args[key]
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ValueError(f"config {key!r} must be an integer in [{low}, {high}], got {v!r:.60}")
    return v


def flag(args, key):
    """``args[key]`` checked to be true or false (or 0/1)."""
    v = args[key]
    if not isinstance(v, (bool, int)) or v not in (0, 1):
        raise ValueError(f"config {key!r} must be true or false, got {v!r:.60}")
    return bool(v)


def linear_shapes(prefix, in_features, out_features, bias=True):
    shapes = {f"{prefix}weight": (out_features, in_features)}
    if bias:
        shapes[f"{prefix}bias"] = (out_features,)
    return shapes


def embedding_shapes(prefix, num_embeddings, embedding_dim):
    return {f"{prefix}weight": (num_embeddings, embedding_dim)}


def recurrent_shapes(prefix, cell, input_size, hidden_size, num_layers=1, bias=True,
                     bidirectional=False, proj_size=0):
    """The parameters of :class:`~xprnn.nn.layer.Recurrent` (names as it gives them)."""
    c = cells.get(cell)
    D = 2 if bidirectional else 1
    shapes = {}
    for layer in range(num_layers):
        width = input_size if layer == 0 else (proj_size or hidden_size) * D
        for sfx in ("", "_reverse")[:D]:
            for k, shape in c.parameters(width, hidden_size, bias, proj_size).items():
                shapes[f"{prefix}{k}_l{layer}{sfx}"] = tuple(shape)
    return shapes


def expected_shapes(cls, config):
    """``{name: shape}`` of the parameters ``cls(**config)`` would have, without building it;
    ``None`` for a class whose shapes are not known (a subclass that does not declare
    ``param_shapes`` may change them). A ``ValueError`` names a missing or malformed entry."""
    # xprnn's own classes declare their shapes; a subclass defined elsewhere may have changed
    # them unless it declares its own, so it is built first and compared after
    if "param_shapes" not in cls.__dict__ and not cls.__module__.startswith("xprnn."):
        return None
    shapes = getattr(cls, "param_shapes", None)
    return None if shapes is None else shapes(config)
