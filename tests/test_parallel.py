"""Data parallelism (:mod:`xprnn.training.parallel`).

Under ``mpiexec -n 2`` (``tests/_parallel_worker.py``): two processes train a classifier and a
language model to the parameters of one process with the same global batch, to float64
round-off; Ctrl-C in one process stops both after the same step and a resumed run ends as an
uninterrupted one; an exception in one process ends the job; a non-finite or exploding loss in one
process stops every process; the command line trains data-parallel with no other change. Each run
has a timeout, so a hang fails instead of blocking. They skip where mpi4py or mpiexec is missing.

In this process, on every backend: with a communicator of one process, the parallel path gives
exactly what ``fit`` gives (it packs, weighs, sends through the host and unpacks every step).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import xprnn
from xprnn.backend import to_numpy
from xprnn.checkpoint import load
from xprnn.cli import main
from xprnn.training import parallel
from xprnn.training._shard import Shards, row_range

from . import _parallel_worker as worker
from ._helpers import mpirun as _mpirun
from ._helpers import need_mpi as _need_mpi

TOL = 1e-12  # float64: the sums differ from one process's in the order of additions only


def _worker(tmp, task):
    return _mpirun(tmp, sys.executable, worker.__file__, task, tmp)


def _max_diff(a, b):
    assert sorted(a) == sorted(b)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """The ``equal`` task's files, run once for the tests below."""
    _need_mpi()
    tmp = tmp_path_factory.mktemp("parallel")
    code, _, err = _worker(tmp, "equal")
    assert code == 0, err[-3000:]
    return tmp, json.loads((tmp / "found.json").read_text())


@pytest.fixture(autouse=True)
def _numpy_only(request, backend):
    gpu = request.node.get_closest_marker("gpu") is not None
    if backend != "numpy" and "xp" not in request.fixturenames and not gpu:
        pytest.skip("the processes train on NumPy; the backends are tested in one process")


@pytest.mark.parametrize("name,make", [("classifier", worker.classifier),
                                       ("lm", worker.language_model)])
def test_two_processes_train_as_one_with_the_same_global_batch(two, name, make):
    tmp, found = two
    model, _ = worker.train(make, xprnn.fit)
    got = dict(np.load(tmp / f"{name}.npz"))
    assert _max_diff(worker.params(model), got) < TOL
    assert found[name] and found[f"{name}_world_size"] == 2  # both processes hold the same


def test_a_batch_with_fewer_rows_than_processes(two):
    tmp, _ = two

    def small_batches():
        model, opt, tr, va = worker.classifier()
        tr.batch_size = 4
        return model, opt, tr, va

    model, _ = worker.train(small_batches, xprnn.fit)
    assert _max_diff(worker.params(model), dict(np.load(tmp / "classifier_b4.npz"))) < TOL


def test_ctrl_c_in_one_process_stops_all_and_the_resumed_run_ends_as_one(two):
    tmp, found = two
    assert found["interrupted_at"] == [2, 7]  # both processes, after the same step
    model, _ = worker.train(worker.language_model, xprnn.fit)
    got = dict(np.load(tmp / "lm_resumed.npz"))
    assert _max_diff(worker.params(model), got) < TOL


def test_dropout_each_process_draws_its_own_masks(two):
    _, found = two
    assert found["dropout_own_streams"] and found["dropout_same_parameters"]


def test_an_error_in_one_process_ends_the_job(tmp_path):
    _need_mpi()
    code, _, err = _worker(tmp_path, "raise")
    assert code != 0
    assert "error in process 1 of 2: RuntimeError: boom in the third step" in err
    assert "ending all 2 processes" in err


def test_a_command_line_error_in_one_process_ends_the_job(tmp_path):
    _need_mpi()
    rows = "\n".join(f"good film {i},pos\nbad film {i},neg" for i in range(20))
    (tmp_path / "d0.csv").write_text(f"review,sentiment\n{rows}\n", encoding="utf-8")
    code = ("import os, sys; from xprnn.cli import main; "
            "rank = os.environ.get('PMI_RANK') or os.environ.get('OMPI_COMM_WORLD_RANK'); "
            "sys.exit(main(['sentiment', 'train', '--data', f'd{rank}.csv', '--epochs', '1', "
            "'--no-progress', '--out', 'out']))")
    code, _, err = _mpirun(tmp_path, sys.executable, "-c", code)
    assert code != 0
    assert "xprnn: error: --data: d1.csv: no such file" in err
    assert "ending all 2 processes (error in process 1)" in err


def test_a_non_finite_loss_in_one_process_stops_every_process(tmp_path):
    _need_mpi()
    code, _, err = _worker(tmp_path, "diverge")
    assert code == 0, err[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"diverged.{rank}").read_text() == "non-finite loss (nan) at epoch 1, " \
                                                             "step 2"


def test_an_exploding_loss_in_one_process_stops_every_process_at_the_same_step(tmp_path):
    _need_mpi()
    code, _, err = _worker(tmp_path, "explode")
    assert code == 0, err[-3000:]
    reasons = {(tmp_path / f"exploded.{rank}").read_text() for rank in (0, 1)}
    (reason,) = reasons  # the same words in both processes
    assert reason.startswith("loss exploded") and reason.endswith("at epoch 1, step 6")


def test_the_command_line_trains_data_parallel_under_mpiexec(tmp_path, capsys):
    _need_mpi()
    args = ["sentiment", "train", "--limit", "300", "--epochs", "1", "--dropout", "0",
            "--dtype", "float64", "--embedding-dim", "16", "--hidden", "16", "--json",
            "--no-progress"]
    code, out, err = _mpirun(tmp_path, sys.executable, "-m", "xprnn", *args, "--out", "two")
    assert code == 0, err[-3000:]
    (line,) = out.splitlines()  # one JSON result: process 1 prints nothing
    assert json.loads(line)["world_size"] == 2
    assert json.loads((tmp_path / "two" / "history.json").read_text())["world_size"] == 2
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one, two = load(tmp_path / "one").state_dict(), load(tmp_path / "two").state_dict()
    assert _max_diff({k: to_numpy(v) for k, v in one.items()},
                     {k: to_numpy(v) for k, v in two.items()}) < TOL
    # the test set scored in shares (each process every other review) as in one process,
    # blended with the same baseline and weights
    r1, r2 = json.loads(capsys.readouterr().out), json.loads(line)
    assert r1["test_size"] == r2["test_size"] == 300
    assert r2["blend"]["ngram_weight"] == r1["blend"]["ngram_weight"]
    assert abs(r2["blend"]["recurrent_weight"] - r1["blend"]["recurrent_weight"]) <= 0.01
    assert abs(r2["test_loss"] - r1["test_loss"]) < 1e-3
    assert abs(r2["blend"]["recurrent_test_loss"] - r1["blend"]["recurrent_test_loss"]) < 1e-9
    assert (tmp_path / "two" / "ngrams" / "model.safetensors").is_file()

    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    code, out, err = _mpirun(tmp_path, sys.executable, "-m", "xprnn", "lm", "train", "--text",
                             text, "--level", "char", "--hidden", "8", "--layers", "1",
                             "--seq-len", "20", "--batch-size", "4", "--epochs", "1", "--json",
                             "--no-progress", "--out", "lm")
    assert code == 0, err[-3000:]
    (line,) = out.splitlines()
    assert json.loads(line)["world_size"] == 2


@pytest.mark.gpu
@pytest.mark.parametrize("transport,n", [("host", 2), ("nccl", 1), ("cuda-mpi", 2)])
def test_cupy_transports_train_as_one_process(tmp_path, backend, transport, n):
    """Not run on the project's machines (no GPU). ``nccl`` with one process (NCCL refuses two
    processes on one GPU; on a machine with several it splits them by rank); ``cuda-mpi`` only
    where ``XPRNN_TEST_CUDA_MPI=1`` says that the MPI is CUDA-aware (the MPICH wheel is not)."""
    if backend != "cupy":
        pytest.skip("runs in the cupy session (--backend cupy)")
    xp = pytest.importorskip("array_api_compat.cupy")
    _need_mpi()
    if transport == "cuda-mpi" and os.environ.get("XPRNN_TEST_CUDA_MPI") != "1":
        pytest.skip("set XPRNN_TEST_CUDA_MPI=1 where mpiexec's MPI is CUDA-aware")
    code, _, err = _mpirun(tmp_path, sys.executable, worker.__file__, f"cupy-{transport}",
                           tmp_path, n=n)
    assert code == 0, err[-3000:]
    model, _ = worker.train(lambda: worker.classifier(xp=xp), xprnn.fit)
    got = dict(np.load(tmp_path / f"cupy_{transport}.npz"))
    assert _max_diff(worker.params(model), got) < TOL


# -- in this process -------------------------------------------------------------------------


class _Solo:
    """A communicator of one process: what ``MPI.COMM_SELF`` does, without starting MPI."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Allreduce(self, sendbuf, recvbuf, op=None):  # in place: the buffer is its own sum
        pass

    def Bcast(self, buf, root=0):
        pass

    def allgather(self, value):
        return [value]

    def allreduce(self, value, op=None):
        return value

    def gather(self, value, root=0):
        return [value]

    def Abort(self, code):
        raise SystemExit(code)


@pytest.fixture
def solo():
    mpi4py = pytest.importorskip("mpi4py", reason="mpi4py is not installed (its constants "
                                                  "name the reductions)")
    mpi4py.rc.initialize = mpi4py.rc.finalize = False  # the constants only: no MPI here
    return parallel.DataParallel(_Solo())


@pytest.mark.parametrize("make", [worker.classifier, worker.language_model],
                         ids=["classifier", "language-model"])
def test_one_process_parallel_path_equals_fit_bit_for_bit(xp, device, solo, make):
    model, history = worker.train(lambda: make(xp=xp, device=device), xprnn.fit)
    team_model, team_history = worker.train(lambda: make(xp=xp, device=device), solo.fit)
    for k, v in worker.params(model).items():
        np.testing.assert_array_equal(worker.params(team_model)[k], v, err_msg=k)
    strip = [{k: v for k, v in e.items() if k not in ("seconds", "tokens_per_s")}
             for e in history.epochs]
    assert strip == [{k: v for k, v in e.items() if k not in ("seconds", "tokens_per_s")}
                     for e in team_history.epochs]
    assert team_history.world_size == 1


def test_world_is_none_without_a_launcher_and_mpi4py_stays_unimported():
    launcher = parallel._SIZE_VARS + parallel._RANK_VARS
    env = {k: v for k, v in os.environ.items() if k not in launcher}
    code = ("import sys; from xprnn.training import parallel; "
            "print(parallel.world(), 'mpi4py' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.split() == ["None", "False"], r.stderr


def test_a_launcher_without_mpi4py_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py fails
    with pytest.raises(ImportError, match=r"one of 4 processes.*pip install 'xprnn\[mpi\]'"):
        parallel.world()


def test_rows_are_split_in_contiguous_blocks():
    assert [row_range(5, r, 2) for r in (0, 1)] == [(0, 2), (2, 5)]
    assert [row_range(1, r, 2) for r in (0, 1)] == [(0, 0), (0, 1)]
    ids, labels = np.arange(10).reshape(5, 2), np.arange(5)
    seen = []
    shards = Shards([(ids, labels), (ids[:1], labels[:1])], 0, 2,
                    on_batch=lambda b, rows, total: seen.append((rows, total)))
    (a, la), (b, lb) = list(shards)
    np.testing.assert_array_equal(a, ids[:2])
    np.testing.assert_array_equal(la, labels[:2])
    # no row of a one-row batch for process 0: it takes part with row 0, weighed by zero
    np.testing.assert_array_equal(b, ids[:1])
    assert seen == [(2, 5), (0, 1)]
    assert len(list(Shards([(ids[:1], labels[:1])], 0, 2, keep_empty=False))) == 0


def test_unseeded_shuffled_batches_are_refused(solo):
    model, opt, tr, _ = worker.classifier()
    tr.seed = None
    with pytest.raises(ValueError, match="seed=None shuffle differently in every process"):
        solo.fit(model, tr, opt, 1, **worker.KW)
