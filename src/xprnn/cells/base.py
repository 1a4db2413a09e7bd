r"""The cell contract: what a recurrent cell declares, and the registry the layers look it up in.

A cell is data, not a class hierarchy (:class:`Cell`). It declares

- its **parameters** for one direction: PyTorch's names and layout, ``weight_ih (G*H, I)``,
  ``weight_hh (G*H, H)``, ``bias_ih`` and ``bias_hh (G*H,)``, gate blocks stacked along the first
  axis, initialised from ``U(-1/sqrt(H), 1/sqrt(H))``;
- ``prepare(p, *, xp) -> Weights``: whatever the loop needs, computed once per call from the
  parameters ``p`` (the input-projection matrix and bias, the recurrent matrix, constants);
- a time step split in two. The loop (:mod:`xprnn.nn.recurrent`) does the **matrix products**:
  ``xw = x @ W_in + b_in`` for all steps at once, then per step ``gh = h_prev @ W_rec`` (plus
  ``b_rec`` where the cell keeps one). The cell supplies the rest as two **pure pointwise
  functions** of arrays:

  ``forward(xw_t, gh, *state, *fw_consts, xp) -> (*new_state, *cache)``

  ``backward(*dstate, *cache, *bw_consts, xp) -> (dxw, dgh, *dstate_direct)``

  where ``dxw`` is the gradient of the input projection ``xw_t``, ``dgh`` that of the recurrent
  product ``gh`` (the loop forms ``dh_prev = dgh @ W_hh`` and the weight gradients), and
  ``dstate_direct`` the gradient reaching the previous state *directly*, not through ``gh``
  (``None`` where there is none). Returning the very same array for ``dxw`` and ``dgh`` tells the
  loop the two gradients are one (RNN, LSTM), which saves a stack and a product.

The arrays may carry leading axes (a bidirectional layer runs its two directions as one, with a
leading direction axis): slice gate blocks on the last axis (``a[..., :H]``) and read sizes from
``shape[-1]``. Because the pointwise functions take and return arrays only, a backend may compile
each into one kernel (:func:`xprnn.backend.pointwise`); the plain functions remain the reference.

Variable lengths need no code in a cell: :func:`masked` builds, once per cell function, a
*masked* variant that takes the step's mask (``bool (B, 1)``, false where a row has ended) as its
first array and applies it inside the same pointwise call, so that a backend compiles the mask
into the cell's kernel (:attr:`Cell.masked_forward`, :attr:`Cell.masked_backward`).

Shapes: ``B`` batch, ``I`` input size, ``H`` hidden size, ``G`` number of gate blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

from ..backend import device_of

__all__ = ["Cell", "Weights", "register", "get", "names", "const", "row_scale", "masked"]


class Weights(NamedTuple):
    """What ``Cell.prepare`` hands the loop.

    Attributes
    ----------
    W_in : array (I, G*H)
        Input projection of every step, ``xw = x @ W_in + b_in``.
    b_in : array (G*H,) or None
    W_rec : array (H, G*H)
        Recurrent product of a step, ``gh = h_prev @ W_rec + b_rec``.
    b_rec : array (G*H,) or None
        Only where the pointwise maths needs the recurrent bias apart (the GRU's reset gate
        multiplies ``W_hn h + b_hn``); other cells fold both biases into ``b_in``.
    W_hh : array (G*H, H)
        The parameter itself: ``dh_prev = dgh @ W_hh`` in backward.
    fw : tuple of arrays
        Extra arguments of the pointwise forward (constants, biases).
    bw : tuple of arrays
        Extra arguments of the pointwise backward.
    """

    W_in: object
    b_in: object
    W_rec: object
    b_rec: object
    W_hh: object
    fw: tuple
    bw: tuple


@dataclass(frozen=True)
class Cell:
    """One recurrent cell type.

    Attributes
    ----------
    name : str
        Registry key (``"lstm"``), used by layers, models, checkpoints and the CLI.
    gates : int
        Number ``G`` of gate blocks of size H stacked in the weights.
    states : tuple of str
        Names of the state arrays (``("h",)`` or ``("h", "c")``); the first is the output.
    prepare : callable ``(p, *, xp) -> Weights``
        ``p`` maps ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` to arrays (biases may
        be None).
    forward, backward : callable
        The pointwise halves of a step (see the module docstring).
    projectable : bool
        Whether the output state may be projected to a smaller size after each step
        (``proj_size``): only where the pointwise maths never reads ``h_prev`` itself, as in
        the LSTM, whose ``h_prev`` enters through the recurrent product alone.
    """

    name: str
    gates: int
    states: tuple
    prepare: Callable
    forward: Callable
    backward: Callable
    projectable: bool = False

    @property
    def num_states(self) -> int:
        return len(self.states)

    @property
    def masked_forward(self):
        """``forward`` with the step's mask applied inside it (see :func:`masked`)."""
        return masked(self.forward, "forward", self.num_states)

    @property
    def masked_backward(self):
        """``backward`` with the step's mask applied inside it (see :func:`masked`)."""
        return masked(self.backward, "backward", self.num_states)

    def parameters(self, input_size, hidden_size, bias=True, proj_size=0):
        """``{name: shape}`` of one direction's parameters, in initialisation order (PyTorch's:
        ``weight_hr (P, H)`` last when projecting to ``proj_size = P``)."""
        GH = self.gates * hidden_size
        shapes = {"weight_ih": (GH, input_size),
                  "weight_hh": (GH, proj_size or hidden_size)}
        if bias:
            shapes.update(bias_ih=(GH,), bias_hh=(GH,))
        if proj_size:
            shapes["weight_hr"] = (proj_size, hidden_size)
        return shapes

    def init(self, shapes, hidden_size, rng):
        """NumPy initial values for ``shapes``: PyTorch's ``U(-1/sqrt(H), 1/sqrt(H))``."""
        k = 1.0 / hidden_size**0.5
        return {name: rng.uniform(-k, k, size=shape) for name, shape in shapes.items()}


_CELLS = {}


def register(cell):
    """Make ``cell`` available by name to layers, models, checkpoints and the CLI."""
    if not isinstance(cell, Cell):
        raise TypeError(f"register expects a Cell, got {type(cell).__name__}")
    _CELLS[cell.name] = cell
    return cell


def get(name):
    """The registered cell called ``name`` (a clear ``ValueError`` naming the known ones)."""
    try:
        return _CELLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"cell must be one of {names()}, got {name!r}") from None


def names():
    """Names of the registered cells, sorted."""
    return sorted(_CELLS)


# -- variable lengths inside the pointwise call -----------------------------------------------


@cache  # one function per cell function: the kernel seam caches (and compiles) by function
def masked(fn, kind, ns):
    """The masked variant of a cell's pointwise ``forward`` or ``backward`` (``kind``) for a cell
    with ``ns`` states, built from the cell's own function, so no cell writes it.

    ``m`` is a boolean ``(B, 1)`` mask, false for rows whose sequence has ended (padding):
    they keep their state, emit zeros and pass their state's gradient through untouched.

    - forward ``(m, xw_t, gh, *state, *fw, xp) -> (*new_state, out, *cache)``: ``new_state`` is
      the cell's new state where ``m`` holds and the previous one elsewhere, ``out`` the new
      output state (``h``) where ``m`` holds and zero elsewhere; the cache is the cell's own.
    - backward ``(m, d_out, *dstate, *cache, *bw, xp) -> (dxw, dgh, ddirect, *dstate_rest)``:
      ``d_out`` is the step's output gradient, ``dstate`` the gradient of the (masked) new state.
      The cell's backward sees ``dh = dstate[0] + d_out`` and ``dstate[1:]``, zeroed on padded
      rows, so ``dxw`` and ``dgh`` are zero there (for a finite cache). ``ddirect`` is never
      None: the cell's direct term where ``m`` holds, ``dstate[0]`` elsewhere; the loop adds
      ``dgh @ W_hh``, which is zero on padded rows, and has the previous state's gradient
      without a select of its own. ``dstate_rest`` is the cell's where ``m`` holds and
      ``dstate[1:]`` elsewhere.

    Compilers recognise the variant by its attribute ``masked_of = (kind, fn, ns)``.
    """
    if kind == "forward":

        def masked_forward(m, xw, gh, *args, xp):
            res = fn(xw, gh, *args, xp=xp)
            new = tuple(xp.where(m, s_new, s_old) for s_new, s_old in zip(res[:ns], args[:ns]))
            return (*new, xp.where(m, res[0], 0.0), *res[ns:])

        out = masked_forward
    elif kind == "backward":

        def masked_backward(m, d_out, *args, xp):
            dstate = args[:ns]
            din = (xp.where(m, dstate[0] + d_out, 0.0),
                   *(xp.where(m, d, 0.0) for d in dstate[1:]))
            res = fn(*din, *args[ns:], xp=xp)
            direct = res[2]
            ddirect = xp.where(m, 0.0 if direct is None else direct, dstate[0])
            rest = tuple(xp.where(m, r, d) for r, d in zip(res[3:], dstate[1:]))
            return (res[0], res[1], ddirect, *rest)

        out = masked_backward
    else:
        raise ValueError(f"kind must be 'forward' or 'backward', got {kind!r}")
    out.masked_of = (kind, fn, ns)
    out.__name__ = out.__qualname__ = f"masked_{getattr(fn, '__name__', kind)}"
    return out


# -- helpers the cells share ---------------------------------------------------------------------


def const(value, like, *, xp):
    """A 0-d array of ``like``'s dtype and device: an operation with a Python float costs about
    twice one with an array on NumPy, so constants are made once per call."""
    return xp.asarray(value, dtype=like.dtype, device=device_of(like))


def row_scale(W, blocks, *, xp):
    """Vector ``(G*H,)`` repeating each gate block's factor H times (one factor per gate)."""
    H = W.shape[0] // len(blocks)
    device = device_of(W)
    return xp.concat([xp.full(H, float(f), dtype=W.dtype, device=device) for f in blocks])
