#!/usr/bin/env bash
# softce on a CUDA GPU: the CUDA tests on the device with the default block reduction (warp
# shuffles), the GPU benchmark, the bad-input cases on the device, the 16-bit kernels, the
# labels masked on the device, the linear cross-entropy's device chunk loop and PyTorch's
# CUDA tensors (a training step with no host synchronisation, the linear cross-entropy), then
# the CUDA tests again with shared-memory reductions (at most 8 minutes in all: the steps'
# limits add up to 480 s). Results go to the folder given as $1 (default gpu-results/).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-results}
mkdir -p "$out"
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.txt"
$py -c "import numba, numba_cuda, numpy; print('numba', numba.__version__, 'numba-cuda',
numba_cuda.__version__, 'numpy', numpy.__version__)" | tee -a "$out/device.txt"
export SOFTCE_TEST_GPU=1 PYTHONUNBUFFERED=1
status=0
pytest=($py -m pytest -q -p no:cacheprovider -W ignore::RuntimeWarning --maxfail=30)
step() {  # step SECONDS LOG COMMAND...: run with a time limit, keep the log, note a failure
    local limit=$1 log=$2
    shift 2
    timeout "$limit" "$@" 2>&1 | tee "$out/$log" || status=1
}
step 130 tests_shuffle.txt "${pytest[@]}" tests/test_cuda_sim.py -k "not in_the_simulator"
# float32 then bfloat16, torch.compile's references on the large shapes; the JSON is written
# after each shape, so a run cut at its limit keeps what it measured
step 180 bench_gpu.md $py scripts/bench_gpu.py --json "$out/bench_gpu.json" --plot "$out/bench_gpu.png"
step 60 tests_bad_input.txt "${pytest[@]}" tests/test_bad_input.py -k cuda
step 60 tests_half_labels_torch.txt "${pytest[@]}" tests/test_cuda_half.py \
    tests/test_cuda_deferred_labels.py tests/test_torch_training.py::test_cuda_tensors_match_pytorch \
    tests/test_cuda_linear.py tests/test_torch_linear.py::test_cuda_tensors_match_pytorch \
    -k "not in_the_simulator and not compiles_to_ptx and not must_be_callable"
step 50 tests_shared.txt env SOFTCE_CUDA_REDUCE=shared "${pytest[@]}" tests/test_cuda_sim.py \
    -k "not in_the_simulator and not launch_shapes"
exit $status
