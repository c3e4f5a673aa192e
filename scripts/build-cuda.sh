#!/usr/bin/env bash
# Builds the CUDA splitbench: `scripts/build-cuda.sh [build|check|clippy|env]` (default build;
# clippy lints the CUDA code with -D warnings, as CI does; env prints the exports it uses).
#
# Uses $CUDA_HOME when it holds nvcc 13.0; otherwise sets up CUDA 13.0 from PyPI wheels with
# scripts/cuda-toolchain.sh (no GPU needed to build). The binary runs on GPUs of compute
# capability $CUDA_COMPUTE_CAP (default 90: H100/H200; 89 for L40S/RTX 4090, 80 for A100).
# Its own target dir ($SPLITBENCH_CUDA_TARGET, default target/cuda) keeps the CPU build intact.
# The result, target/cuda/release/splitbench, needs the NVIDIA driver and the CUDA 13 runtime
# libraries (libcudart, libcublas, libcublasLt, libcurand, libnvrtc) wherever it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-build}"

if [ -n "${CUDA_HOME:-}" ] && "$CUDA_HOME/bin/nvcc" --version 2>/dev/null | grep -q 'release 13\.0'; then
  cuda_home="$CUDA_HOME"
else
  cuda_home=$(scripts/cuda-toolchain.sh "${SPLITBENCH_CUDA_TOOLCHAIN:-$HOME/.cache/splitbench-cuda}")
fi
export CUDA_HOME="$cuda_home" CUDA_PATH="$cuda_home"
export PATH="$cuda_home/bin:$PATH" NVCC="$cuda_home/bin/nvcc"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
# Smaller fatbins; cudaforge does not watch this variable, so after changing it run
# `cargo clean --release -p candle-kernels` in the CUDA target dir.
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:---compress-mode=size}"
export CARGO_TARGET_DIR="${SPLITBENCH_CUDA_TARGET:-target/cuda}"

case "$mode" in
  check) cargo check --release -p splitbench --features cuda --all-targets ;;
  clippy) cargo clippy --release -p splitbench --features cuda --all-targets -- -D warnings ;;
  env) echo "export CUDA_HOME=$CUDA_HOME PATH=$CUDA_HOME/bin:\$PATH LD_LIBRARY_PATH=$CUDA_HOME/lib64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" ;;
  build)
    # The whole workspace, so that the built-in plugins sit next to the binary, which finds
    # them there.
    cargo build --release --workspace --features splitbench/cuda
    echo "$CARGO_TARGET_DIR/release/splitbench (CUDA, compute capability $CUDA_COMPUTE_CAP)"
    ;;
  *) echo "usage: scripts/build-cuda.sh [build|check|clippy|env]" >&2; exit 2 ;;
esac
