"""Which namespace and device an array belongs to, and the float dtypes xprnn accepts.

Everything in xprnn follows the arrays the user passes in. The namespace is found once at a
public boundary with :func:`namespace` and handed down as ``xp``; the maths never imports NumPy.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj, is_jax_namespace
from array_api_compat import device as _device

__all__ = [
    "namespace",
    "resolve",
    "device_of",
    "as_dtype",
    "dtype_name",
    "check_float",
    "backend_name",
]


def backend_name(xp) -> str:
    """Short name of a namespace (``"numpy"``, ``"torch"``, ``"cupy"``, ``"array_api_strict"``,
    ``"jax"``)."""
    if is_jax_namespace(xp):  # JAX's namespace is the module jax.numpy: not "numpy"
        return "jax"
    return xp.__name__.split(".")[-1]


def device_of(x):
    """The device an array lives on (``"cpu"`` for NumPy)."""
    return _device(x)


def namespace(*arrays, names=None):
    """The array namespace shared by ``arrays`` (``None`` entries are ignored).

    Parameters
    ----------
    *arrays : arrays or None
        All must come from the same backend and live on the same device.
    names : sequence of str, optional
        Argument names, used in error messages.

    Raises
    ------
    TypeError
        If an argument is not an array, or arrays come from different backends.
    ValueError
        If arrays share a backend but sit on different devices.
    """
    names = list(names) if names is not None else [f"argument {i}" for i in range(len(arrays))]
    present = [(n, a) for n, a in zip(names, arrays) if a is not None]
    for n, a in present:
        if not is_array_api_obj(a):
            raise TypeError(
                f"{n} must be an array (NumPy, CuPy, torch, ...), got {type(a).__name__}"
            )
    try:
        xp = array_namespace(*(a for _, a in present))
    except TypeError:
        kinds = ", ".join(f"{n}: {type(a).__module__}.{type(a).__name__}" for n, a in present)
        raise TypeError(
            f"arrays from different backends cannot be mixed ({kinds}); move them to one "
            "backend first, e.g. with layer.to(x)"
        ) from None
    n0, a0 = present[0]
    d0 = device_of(a0)
    for n, a in present[1:]:
        if device_of(a) != d0:
            raise ValueError(
                f"{n} is on device {device_of(a)!r} but {n0} is on {d0!r}; "
                "move them to one device first"
            )
    return xp


def resolve(target, device=None):
    """Turn a module, namespace or array into ``(xp, device)``.

    ``target`` may be ``numpy``, ``cupy``, ``torch``, ``array_api_strict``, a compat namespace,
    or an array whose namespace and device are taken. ``None`` means NumPy on the CPU.
    """
    if target is None:
        target = np
    if is_array_api_obj(target):
        return array_namespace(target), (device if device is not None else device_of(target))
    if not hasattr(target, "asarray"):
        raise TypeError(
            f"expected an array module (numpy, cupy, torch, array_api_strict) or an array, "
            f"got {target!r}"
        )
    probe = target.asarray([0.0]) if device is None else target.asarray([0.0], device=device)
    return array_namespace(probe), device_of(probe)


_FLOAT_NAMES = ("float32", "float64")


def dtype_name(dtype) -> str:
    """``"float32"`` or ``"float64"`` for a NumPy, torch or Array API float dtype, or a string."""
    s = str(dtype)
    for name in _FLOAT_NAMES:
        if s == name or s.endswith("." + name) or s.endswith(name + "'>"):
            return name
    try:
        s = np.dtype(dtype).name
    except TypeError:  # not a NumPy dtype (a torch one, say): only the name checks above apply
        pass
    if s in _FLOAT_NAMES:
        return s
    raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")


def as_dtype(dtype, xp):
    """The dtype of namespace ``xp`` named like ``dtype`` (float32 or float64)."""
    return getattr(xp, dtype_name(dtype if dtype is not None else "float32"))


def check_float(x, name, xp, dtype=None):
    """Raise a clear ``TypeError`` unless ``x`` is a real floating array (of ``dtype`` if given)."""
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {dtype_name(x.dtype)} but the parameters are {dtype_name(dtype)}; "
            "cast one to the other"
        )
