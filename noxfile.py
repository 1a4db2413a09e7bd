"""The single entry point: ``nox`` runs the default sessions (tests on numpy, array_api_strict,
array_api_strict_device (array-api-strict's simulated accelerator) and cupy, lint and docs);
``nox -s "tests(backend='torch')"``, ``nox -s "tests(backend='jax')"``, ``bench`` and ``results``
on request."""

from __future__ import annotations

import shutil

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False
# plain `nox`: the torch and jax sessions (large installs) and the long runs are opt-in
nox.options.sessions = [
    "tests(backend='numpy')",
    "tests(backend='array_api_strict')",
    "tests(backend='array_api_strict_device')",
    "tests(backend='cupy')",
    "lint",
    "docs",
]

TORCH = "torch==2.13.0"  # a CPU build that installs offline on the project's machines
JAX = "jax[cpu]"


@nox.session
@nox.parametrize(
    "backend",
    [
        "numpy",
        "array_api_strict",
        "array_api_strict_device",
        nox.param("cupy", tags=["gpu"]),
        nox.param("torch", tags=["torch"]),
        nox.param("jax", tags=["jax"]),
    ],
)
def tests(session, backend):
    """Run the test suite on one array backend (cupy skips without a CUDA device)."""
    if backend == "cupy" and shutil.which("nvidia-smi") is None:
        session.skip("no CUDA device here (nvidia-smi not found): the cupy tests need a GPU")
    session.install("-e", ".[test]")
    if backend == "torch":
        session.install(TORCH)
    if backend == "jax":
        session.install(JAX)
    if backend == "cupy":
        session.install("-e", ".[cupy]")
    session.run("pytest", f"--backend={backend}", *session.posargs)


@nox.session
def lint(session):
    """ruff: style and common bugs."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session
def docs(session):
    """Build the documentation site in strict mode (warnings fail)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session(default=False)
def bench(session):
    """Time xprnn against torch.nn and a per-step NumPy loop; prints a table."""
    session.install("-e", ".", TORCH, "threadpoolctl")
    session.run("python", "benchmarks/bench_layers.py", *session.posargs)


@nox.session(default=False)
def results(session):
    """Long training runs on the real data sets (docs/results.md)."""
    session.install("-e", ".[plot]")
    session.run("python", "benchmarks/results.py", *session.posargs)
