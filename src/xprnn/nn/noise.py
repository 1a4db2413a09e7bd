"""Noise on the recurrence: variational recurrent dropout and zoneout, drawn by a layer for one
direction and one call, then applied inside the time loop (:mod:`xprnn.nn.recurrent`).

- Recurrent dropout (Gal & Ghahramani, 2016): ``gh_t = (h_{t-1} * m) @ W_hh^T`` with one
  inverted-dropout mask ``m`` per sequence, the same at every step; backward multiplies
  ``dh_{t-1}`` (the part through the product) by the same ``m``.
- Zoneout (Krueger et al., 2017): ``s_t = z_t * s_{t-1} + (1 - z_t) * s_new`` for every state,
  ``z_t`` a fresh 0/1 mask per step in training and the rate itself in evaluation; backward
  splits ``ds_t`` into ``z_t ds_t`` for ``s_{t-1}`` and ``(1 - z_t) ds_t`` for the cell.
"""

from __future__ import annotations

from typing import NamedTuple

from .dropout import dropout_mask

__all__ = ["Noise", "make_noise"]


class Noise(NamedTuple):
    """Regularising noise on the recurrence of one direction (made by the layer, per call).

    Attributes
    ----------
    rec_mask : array ([D,] B, P or H), or None
        Variational recurrent dropout (Gal & Ghahramani, 2016): one inverted-dropout mask per
        sequence, multiplying ``h_prev`` where it enters the recurrent product, at every step.
    zone : tuple with one entry per state, or None
        Zoneout (Krueger et al., 2017): ``state = z * state_prev + (1 - z) * state_new``; an
        entry is a list over the steps, ``z[t]`` being a 0/1 mask ``([D,] B, n)`` in training and
        the rate itself (0-d) in evaluation, or None for a state without zoneout.
    """

    rec_mask: object
    zone: tuple


def make_noise(layer, T, B, *, xp):
    """The :class:`Noise` of one layer of ``layer`` (all its directions, stacked on a leading
    axis when there are two) for ``T`` steps of ``B`` rows, drawn from ``layer.rng``; ``None``
    when the layer has neither kind (or only recurrent dropout, in evaluation)."""
    p, rates = layer.recurrent_dropout, layer.zoneout
    if not (p and layer.training) and not any(rates):
        return None
    dev, dt = layer.device, layer.dtype
    lead = (B,) if layer.num_directions == 1 else (layer.num_directions, B)
    rec = None
    if p and layer.training:
        rec = dropout_mask((*lead, layer.output_size), p, layer.rng, dt, dev, xp=xp)
    zone = None
    if any(rates):
        zone = []
        for r, n in zip(rates, layer.state_sizes):
            if not r:
                zone.append(None)
            elif layer.training:  # 1 where the unit keeps its previous value
                z = xp.astype(layer.rng.uniform((T, *lead, n), dt, xp=xp, device=dev) < r, dt)
                zone.append([z[t, ...] for t in range(T)])
            else:
                zone.append([xp.asarray(r, dtype=dt, device=dev)] * T)
        zone = tuple(zone)
    return Noise(rec, zone)
