"""``xprnn.backend.keep_freed_memory``: malloc keeps the per-step arrays' memory between steps.

The settings are process-wide, so every check that applies them runs in a fresh Python process.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

import xprnn.cli
from xprnn.backend import keep_freed_memory

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="malloc's trimming is glibc's (Linux)")

# 20 rounds of 16 freshly written 1 MiB arrays, freed together: the pattern of a time loop's
# per-step blocks. Prints the minor page faults of the 20 rounds (after two to settle).
CHURN = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from xprnn.backend import keep_freed_memory
    if sys.argv[1] == "keep":
        print(keep_freed_memory())
    def churn():
        blocks = [np.ones(2**18, dtype=np.float32) for _ in range(16)]
        del blocks
    churn(); churn()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        churn()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
""")


def _churn(mode, extra=None):
    """The CHURN script's output lines in a fresh process whose malloc is untuned but for
    ``extra`` environment variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(extra or {})
    return subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True,
                          env=env, timeout=120, check=True).stdout.split()


@glibc_only
def test_freed_blocks_are_reused_without_page_faults():
    (default,) = _churn("default")
    applied, kept = _churn("keep")
    assert applied == "True"
    # kept, the heap serves every round from memory: fewer faults in all 20 rounds than one
    # round's 16 MiB / 4 KiB = 4096 pages
    assert int(kept) < 4096
    # glibc's default (2.36 here) hands the 16 MiB back after every round and faults it in
    # again; where another glibc or kernel setting does not, there is nothing to compare
    if int(default) > 20 * 4096 // 2:
        assert int(kept) < int(default) // 20


@glibc_only
@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}])
def test_a_malloc_tuned_by_the_environment_is_left_alone(env):
    applied, _ = _churn("keep", env)
    assert applied == "False"


@pytest.mark.parametrize("bad", [-1, 1.5, "32M", True, None])
def test_thresholds_must_be_byte_counts(bad):
    with pytest.raises(ValueError, match="mmap_threshold must be a non-negative int"):
        keep_freed_memory(mmap_threshold=bad)
    with pytest.raises(ValueError, match="trim_threshold must be a non-negative int"):
        keep_freed_memory(trim_threshold=bad)


def test_the_command_applies_it(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(xprnn.cli, "keep_freed_memory", lambda: calls.append(1))
    code = xprnn.cli.main(["sentiment", "eval", "--model", str(tmp_path / "missing"),
                           "--data", str(tmp_path / "none.csv")])
    assert code != 0 and "missing" in capsys.readouterr().err
    assert calls == [1]
