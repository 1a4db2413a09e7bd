"""The floor every other part of xprnn stands on: namespaces and devices, host transfer, random
numbers, scatter-add, the seam where a backend may compile pointwise kernels, and the process's
memory allocator.

This subpackage is the only place that knows about concrete array libraries; everything above it
is written against the Array API standard through the ``xp`` it hands down.
"""

from . import cupy_kernels
from .kernels import pointwise, register_compiler, unregister_compiler
from .memory import keep_freed_memory
from .namespace import (
    as_dtype,
    backend_name,
    check_float,
    device_of,
    dtype_name,
    namespace,
    resolve,
)
from .random import Generator
from .scatter import index_add
from .transfer import from_numpy, to_numpy

__all__ = [
    "namespace", "resolve", "device_of", "backend_name", "dtype_name", "as_dtype", "check_float",
    "to_numpy", "from_numpy", "Generator", "index_add",
    "pointwise", "register_compiler", "unregister_compiler", "keep_freed_memory",
]

# CuPy's one-launch kernels for the shipped cells, where CuPy is installed (not imported here)
cupy_kernels.register_if_available()
