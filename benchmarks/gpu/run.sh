#!/usr/bin/env bash
# xprnn on a CUDA machine that may have no package index: the CuPy test session and the GPU
# benchmarks, with the python found there (pytest, cupy, torch) plus the wheels carried in
# benchmarks/gpu/wheels/ (see README.md beside this script). Writes everything to one folder.
#
#   bash benchmarks/gpu/run.sh [OUT_DIR]        # default: ./gpu-results-<UTC time>
#   PYTHON=/opt/conda/bin/python bash benchmarks/gpu/run.sh
#   QUICK=1 bash benchmarks/gpu/run.sh          # the benchmarks at smoke size
#
# Without CuPy or a CUDA device it says so and exits 0, having written and installed nothing.
# Otherwise it exits with the test session's status (or the benchmark's, if the tests passed).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${PYTHON:-python3}"
out="${1:-$PWD/gpu-results-$(date -u +%Y%m%dT%H%M%SZ)}"

# -- 1. a GPU, or a clean skip ------------------------------------------------------------------
gpu="$("$py" - 2>&1 <<'EOF'
import sys
try:
    import cupy
except ImportError as e:
    sys.exit(f"cupy is not importable ({e})")
try:
    n = cupy.cuda.runtime.getDeviceCount()
except Exception as e:  # no driver or runtime: CuPy raises its own CUDA errors
    sys.exit(f"cupy is installed but no CUDA device is usable ({e})")
if not n:
    sys.exit("cupy is installed but no CUDA device is present")
name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
print(name.decode() if isinstance(name, bytes) else name)
EOF
)"
if [ $? -ne 0 ]; then
    echo "run.sh: SKIPPED, nothing to run without a GPU: ${gpu##*$'\n'}"
    exit 0
fi
echo "run.sh: GPU: $gpu; results go to $out"
mkdir -p "$out"
site="$out/site-packages"  # a private folder: the system's packages stay as they are
pip=("$py" -m pip --disable-pip-version-check --no-input)

# -- 2. the carried wheels, for what this python lacks only (never a second numpy) -------------
if [ -d "$here/wheels" ]; then
    mapfile -t need < <("$py" - "$here/wheels" <<'EOF'
import importlib.metadata as md
import pathlib
import sys

for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = wheel.name.split("-")[0].replace("_", "-")
    try:
        md.version(name)
    except md.PackageNotFoundError:
        print(wheel)
EOF
)
    if [ "${#need[@]}" -gt 0 ]; then
        "${pip[@]}" install --no-deps --no-index --target "$site" "${need[@]}" \
            >"$out/pip-wheels.log" 2>&1 || echo "run.sh: WARNING: installing wheels failed," \
            "see $out/pip-wheels.log"
    fi
else
    echo "run.sh: no $here/wheels folder: using only what this python has"
fi

# -- 3. xprnn from this tree, without dependencies ----------------------------------------------
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
find_links=()
[ -d "$here/wheels" ] && find_links=(--find-links "$here/wheels")
if "${pip[@]}" install --no-deps --no-index "${find_links[@]}" --target "$site" "$repo" \
        >"$out/pip-xprnn.log" 2>&1 \
    || "${pip[@]}" install --no-deps --no-index --no-build-isolation --target "$site" "$repo" \
        >>"$out/pip-xprnn.log" 2>&1; then
    echo "run.sh: xprnn installed into $site"
else  # no build backend here: the source tree itself
    echo "run.sh: could not build xprnn (see $out/pip-xprnn.log): using $repo/src"
    export PYTHONPATH="$repo/src:$PYTHONPATH"
fi

"$py" - >"$out/environment.txt" 2>&1 <<'EOF'
import importlib
import platform

print("python", platform.python_version(), platform.platform())
for name in ("xprnn", "numpy", "cupy", "torch", "array_api_compat", "array_api_strict",
             "safetensors", "tqdm", "hypothesis", "pytest"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"), getattr(m, "__file__", ""))
    except Exception as e:  # report, do not stop: the test session says what is missing
        print(name, "MISSING", type(e).__name__, e)
EOF
cat "$out/environment.txt"

# -- 4. the CuPy test session, then the benchmarks ----------------------------------------------
cd "$repo" || exit 1
"$py" -m pytest --backend cupy -p no:cacheprovider -rs -q --junitxml "$out/junit-cupy.xml" \
    2>&1 | tee "$out/pytest-cupy.log"
tests=${PIPESTATUS[0]}

"$py" benchmarks/count_launches.py --markdown "$out/launches.md" >"$out/launches.log" 2>&1
quick=()
[ "${QUICK:-0}" != 0 ] && quick=(--quick)
"$py" benchmarks/bench_gpu.py "${quick[@]}" --markdown "$out/bench_gpu.md" \
    --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.log"
bench=${PIPESTATUS[0]}

{
    echo "# xprnn on $gpu ($(date -u +%Y-%m-%dT%H:%MZ), git $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    echo "- CuPy test session: exit $tests: $(tail -n 1 "$out/pytest-cupy.log")"
    echo "- bench_gpu.py: exit $bench"
    echo
    echo "## Launch counts (calls per step per layer, counted on the CPU)"
    echo
    cat "$out/launches.md" 2>/dev/null
    echo
    echo "## GPU benchmarks"
    echo
    cat "$out/bench_gpu.md" 2>/dev/null
} >"$out/summary.md"
echo "run.sh: done: $out/summary.md"
[ "$tests" -ne 0 ] && exit "$tests"
exit "$bench"
