"""Helpers for the benchmarks: interleaved timing, a matrix-product ceiling, cache bytes, and the
machine and library facts a result means nothing without.

Why interleaved medians: the machine is shared and noisy (absolute times drift up to 2x, and
threaded code sometimes slows several-fold for a while), so every contender of one comparison
runs once per round, the rounds repeat, and each contender's median over rounds is compared with
the others'. Ratios taken this way were stable to about +-20% (see ``shared/PERF-NOTES.md``).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
import tracemalloc
import types
from pathlib import Path

__all__ = [
    "interleaved",
    "matmul_gflops",
    "cache_bytes",
    "traced_peak",
    "environment",
    "loadavg",
    "median_ms",
]


def _call_timed(fn, sync, pause=0.0):
    """Seconds taken by ``fn()``; ``sync()`` (device synchronise) runs before both clock reads
    so queued GPU work is neither charged to nor hidden from this call. ``pause`` seconds of
    sleep come first (see :func:`interleaved`)."""
    sync()
    if pause:
        time.sleep(pause)
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _no_sync():
    pass


def interleaved(contenders, *, repeats, warmup=1, sync=_no_sync, pause=0.0):
    """Time several callables round by round and return each one's per-round seconds.

    Parameters
    ----------
    contenders : dict name -> callable
    repeats : int
        Timed rounds; every contender runs once per round.
    warmup : int
        Untimed rounds first (allocator, BLAS thread start-up, caches).
    sync : callable
        Run before starting and before stopping each clock (``cupy`` / ``torch.cuda``
        synchronise); a no-op on the CPU.
    pause : float
        Seconds to sleep before each timed call, so that the threads the previous contender
        left busy-waiting (OpenBLAS's workers spin for about 0.1 s after a product, OpenMP's
        for a while after a parallel region) are asleep when the next one starts. Without it,
        on 2 cores, torch's training steps ran 1.3-1.8x slower right after a NumPy call
        (xprnn's within 10% after torch's), which made xprnn/torch ratios look better than
        either library alone gives.

    Returns
    -------
    dict name -> list of float seconds (length ``repeats``)

    The order inside a round rotates (A B C, B C A, ...) so that no contender always runs right
    after the same other one.
    """
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            _call_timed(contenders[name], sync, pause)
    times = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(_call_timed(contenders[name], sync, pause))
    return times


def median_ms(seconds):
    return 1e3 * statistics.median(seconds)


def matmul_gflops(n, *, xp, dtype, repeats=5, sync=_no_sync):
    """Median GFLOP/s of one ``(n, n) @ (n, n)`` product (``2 n^3`` flops) in ``xp``: the
    ceiling the recurrent layers are measured against."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    b = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    seconds = interleaved({"mm": lambda: a @ b}, repeats=repeats, warmup=1, sync=sync)["mm"]
    return 2.0 * n**3 / statistics.median(seconds) / 1e9


def _is_array(obj):
    return all(hasattr(obj, attr) for attr in ("shape", "dtype", "nbytes"))


def _root(a):
    """The array that owns ``a``'s memory (NumPy and CuPy views keep it in ``.base``)."""
    while getattr(a, "base", None) is not None and _is_array(a.base):
        a = a.base
    return a


def cache_bytes(cache, exclude=()):
    """Bytes of the distinct arrays reachable from ``cache``.

    Walks tuples, lists, dicts and plain objects' attributes (modules, functions and classes
    are skipped). Each array counts as the whole buffer it views, and each buffer once; buffers
    that ``exclude`` (arrays) view are not counted, e.g. the parameters and the caller's input,
    which exist whether or not a cache is kept.
    """
    skip = {id(_root(a)) for a in exclude}
    seen, counted, total = set(), set(), 0
    stack = [cache]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if _is_array(obj):
            root = _root(obj)
            if id(root) not in skip and id(root) not in counted:
                counted.add(id(root))
                total += int(root.nbytes)
        elif isinstance(obj, (tuple, list, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                              type, str, bytes, int, float, complex, bool)) or obj is None:
            continue
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
        elif hasattr(obj, "__slots__"):
            stack.extend(getattr(obj, s) for s in obj.__slots__ if hasattr(obj, s))
    return total


def traced_peak(fn):
    """Peak bytes allocated (NumPy reports its buffers to ``tracemalloc``) while ``fn()`` runs,
    above what was allocated when it started. Host memory only: 0 for GPU arrays."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    del result
    return peak


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags)
    except OSError:
        pass
    return "?"


def loadavg():
    """1-minute load average: above ~0.5 another process shares the 2 cores, and 2-thread code
    can then slow down several-fold."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _git_state(repo):
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "src"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (src/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def products(xp, shape, gates, seed=0):
    """``{"forward": fn, "train": fn}``: the matrix products of one xprnn layer's call and
    nothing else, with its shapes and layouts (``nn/recurrent.py``) on arrays of ``xp`` (NumPy
    or CuPy), float32, a direction, ``gates`` gate blocks. Forward: the input projection, then T
    recurrent products; train adds T products ``dgh @ W_hh`` and the three weight and input
    gradients after the loop. The time of these is the least any xprnn layer can take."""
    import numpy as np

    B, T, I, H = shape
    GH = gates * H
    rng = np.random.default_rng(seed)

    def draw(*s):
        return xp.asarray(rng.standard_normal(s).astype(np.float32))

    X, W_in, h, W_rec = draw(T * B, I), draw(GH, I).T, draw(B, H), draw(H, GH)
    W_hh, dg, DG, HP, W_ih = draw(GH, H), draw(B, GH), draw(T * B, GH), draw(T * B, H), draw(GH, I)

    def forward():
        return X @ W_in, [h @ W_rec for _ in range(T)]

    def train():
        DGt = DG.T  # (NumPy and CuPy arrays both have .T)
        return (forward(), [dg @ W_hh for _ in range(T)], DGt @ X, DGt @ HP, DG @ W_ih)

    return {"forward": forward, "train": train}


MALLOC_CHOICES = ("keep", "default")


def add_malloc_option(parser):
    """The ``--malloc`` option of the CPU benchmarks that train in their own process
    (bench_layers, bench_versions, bench_training; those that run the ``xprnn`` command get
    the command's setting)."""
    parser.add_argument(
        "--malloc", choices=MALLOC_CHOICES, default="keep",
        help="keep: glibc's malloc keeps freed memory for the next step, as the xprnn command "
             "has it (xprnn.backend.keep_freed_memory); default: glibc's own trimming, as a "
             "program that never calls it has it (default: keep)")


def apply_malloc(choice):
    """Apply ``--malloc`` to this whole process, so to every contender alike; returns the line
    the report prints about it."""
    if choice == "default":
        return "glibc's default (free heap memory handed back to the system)"
    from xprnn.backend import keep_freed_memory

    if keep_freed_memory():
        return "keeps freed memory (xprnn.backend.keep_freed_memory(), as the xprnn command)"
    return "unchanged (keep_freed_memory() does not apply here: not glibc, or MALLOC_* set)"


def environment(repo):
    """Facts about this run: CPU, thread pools, library versions, OpenBLAS environment."""
    import numpy as np
    import threadpoolctl

    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": _cpu_flags(),
        "loadavg": loadavg(),
        "xprnn_git": _git_state(repo),
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO"))},
        "threadpools": [
            {k: p.get(k) for k in ("user_api", "internal_api", "version", "architecture",
                                   "num_threads", "threading_layer", "filepath")}
            for p in threadpoolctl.threadpool_info()
        ],
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
    except ImportError:
        info["torch"] = None
    return info
