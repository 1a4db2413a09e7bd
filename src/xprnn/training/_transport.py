"""How the gradients travel: packed into one flat buffer (:func:`pack`, :func:`unpack`), which
is summed or broadcast across processes by a transport, the one seam between data parallelism
and the wire.

A transport has two methods, both collective (every process calls them in the same order):

- ``allreduce(flat) -> flat``: the element-wise sum of every process's ``flat`` (1-D, one dtype),
  in every process, as an array of the same backend and device;
- ``broadcast(flat, root=0) -> flat``: ``root``'s ``flat`` in every process.

Three ship:

- ``"host"`` (the default, and the only one for NumPy, torch on the CPU and array-api-strict):
  the buffer goes to host memory (:func:`xprnn.backend.to_numpy`, no copy for NumPy), MPI sums it
  there (``Allreduce`` in place), and it comes back (:func:`xprnn.backend.from_numpy`). Works with
  any MPI and any backend; on a GPU it costs two copies over PCIe per step.
- ``"cuda-mpi"``: a CuPy buffer handed to a CUDA-aware MPI as it is, after the current stream
  is synchronised (MPI reads device memory directly and knows nothing of CUDA streams, so the
  kernels that wrote the buffer must have finished). A non-CUDA-aware MPI would crash here.
- ``"nccl"``: NCCL through ``cupyx.distributed.NCCLBackend``, started with MPI (``use_mpi``);
  NCCL orders its work on the CUDA stream itself, so no synchronisation is needed. One process
  per GPU.

Only ``"host"`` is tested here (no GPU); the other two are the documented route for CuPy.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import from_numpy, to_numpy

__all__ = ["TRANSPORTS", "HostMPI", "CudaMPI", "NCCL", "make_transport", "pack", "unpack"]

TRANSPORTS = ("host", "cuda-mpi", "nccl")


class HostMPI:
    """Sum and broadcast in host memory with MPI (``comm`` is an mpi4py communicator)."""

    def __init__(self, comm):
        self.comm = comm

    def _host(self, flat):
        host = to_numpy(flat)  # NumPy: the very array, summed in place
        if not (host.flags.c_contiguous and host.flags.writeable):
            host = np.array(host, order="C")
        return host

    def _back(self, host, like):
        if isinstance(like, np.ndarray):
            return host
        from ..backend import device_of, namespace

        return from_numpy(host, namespace(like), device_of(like))

    def allreduce(self, flat):
        from mpi4py import MPI

        host = self._host(flat)
        self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        return self._back(host, flat)

    def broadcast(self, flat, root=0):
        host = self._host(flat)
        self.comm.Bcast(host, root=root)
        return self._back(host, flat)


class CudaMPI:
    """Hand CuPy device buffers to a CUDA-aware MPI (untested here: no GPU)."""

    def __init__(self, comm):
        self.comm = comm

    def allreduce(self, flat):
        import cupy
        from mpi4py import MPI

        cupy.cuda.get_current_stream().synchronize()
        self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        return flat

    def broadcast(self, flat, root=0):
        import cupy

        cupy.cuda.get_current_stream().synchronize()
        self.comm.Bcast(flat, root=root)
        return flat


class NCCL:
    """NCCL through ``cupyx.distributed``, its rendezvous done with MPI (untested here)."""

    def __init__(self, comm):
        from cupyx.distributed import NCCLBackend

        self.nccl = NCCLBackend(comm.Get_size(), comm.Get_rank(), use_mpi=True)

    def allreduce(self, flat):
        self.nccl.all_reduce(flat, flat, "sum")
        return flat

    def broadcast(self, flat, root=0):
        self.nccl.broadcast(flat, root)
        return flat


def make_transport(kind, comm, xp):
    """The transport named ``kind`` (one of :data:`TRANSPORTS`) for arrays of namespace ``xp``."""
    if kind not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {kind!r}")
    if kind == "host":
        return HostMPI(comm)
    from array_api_compat import is_cupy_namespace

    if not is_cupy_namespace(xp):
        raise ValueError(f"transport {kind!r} takes CuPy arrays, but the model runs on "
                         f"{getattr(xp, '__name__', xp)}; use transport='host'")
    return CudaMPI(comm) if kind == "cuda-mpi" else NCCL(comm)


def pack(arrays, tail, xp):
    """One 1-D buffer: every array flattened in order, then the ``tail`` arrays."""
    return xp.concat([xp.reshape(a, (-1,)) for a in arrays] + list(tail))


def unpack(flat, like, xp):
    """The arrays of the dict ``like`` (names and shapes) read back from ``flat``."""
    out, at = {}, 0
    for k, v in like.items():
        shape = tuple(int(n) for n in v.shape)
        n = math.prod(shape)
        out[k] = xp.reshape(flat[at:at + n], shape)
        at += n
    return out
