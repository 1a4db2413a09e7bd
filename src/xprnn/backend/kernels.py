"""The kernel seam: where a backend may swap in a compiled version of a pure pointwise function.

A recurrent time step is a matrix product followed by a pointwise function of arrays (the
cell's gate maths, :mod:`xprnn.cells`). On a GPU each array call is a kernel launch, so the
pointwise part is where a backend gains most from compiling many operations into one kernel
(``cupy.fuse``, an ``ElementwiseKernel``, ``torch.compile``, ``jax.jit``). The time loop asks for
every pointwise function through :func:`pointwise`; a backend that has registered a compiler with
:func:`register_compiler` gets its compiled version, every other backend the plain function, which
stays the tested reference.

A compiler is ``compile(fn, *, xp, dtype) -> callable or None``: given the plain function
(written with ``xp.`` calls, taking its arrays positionally and ``xp`` as a keyword), it returns a
callable taking the same arrays, or ``None`` to decline (then the plain function runs). Results
are cached per function, namespace and dtype, so compiling happens once.
"""

from __future__ import annotations

from functools import partial

__all__ = ["pointwise", "register_compiler", "unregister_compiler", "clear_cache"]

_COMPILERS = []  # (applies(xp) -> bool, compile)
_CACHE = {}  # (fn, namespace, dtype) -> callable


def register_compiler(applies, compile):
    """Register ``compile`` for every namespace ``xp`` with ``applies(xp)`` true.

    Later registrations take precedence. Clears the cache, so the next call of the loop picks
    the new compiler up.

    Parameters
    ----------
    applies : callable ``(xp) -> bool``
        E.g. ``array_api_compat.is_cupy_namespace``.
    compile : callable ``(fn, *, xp, dtype) -> callable or None``
    """
    _COMPILERS.insert(0, (applies, compile))
    _CACHE.clear()


def unregister_compiler(compile):
    """Remove every registration of ``compile`` (a no-op if there is none)."""
    _COMPILERS[:] = [(a, c) for a, c in _COMPILERS if c is not compile]
    _CACHE.clear()


def clear_cache():
    """Forget every compiled function (they are rebuilt on next use)."""
    _CACHE.clear()


def pointwise(fn, *, xp, dtype):
    """The version of pointwise function ``fn`` to run on namespace ``xp`` for ``dtype``.

    Returns a callable taking ``fn``'s arrays positionally: a registered compiler's result, or
    ``fn`` itself with ``xp`` bound.
    """
    key = (fn, xp, dtype)  # dtypes hash cheaply; their str() costs microseconds on NumPy
    found = _CACHE.get(key)
    if found is None:
        found = next((k for applies, compile in _COMPILERS if applies(xp)
                      for k in (compile(fn, xp=xp, dtype=dtype),) if k is not None), None)
        if found is None:
            found = partial(fn, xp=xp)
        _CACHE[key] = found
    return found
