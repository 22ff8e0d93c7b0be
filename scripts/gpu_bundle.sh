#!/usr/bin/env bash
# Prepares what scripts/bench_gpu.sh needs on an offline GPU machine without a Rust toolchain, in the
# git-ignored gpu-bundle/ (carry it with the device tool): the stripped `sparsecoder` binary, the stripped
# kernel test binary `cuda_kernels`, and pure-Python wheels of sparsify's coder and its dependencies.
# Usage: scripts/gpu_bundle.sh   then, on the GPU machine: scripts/bench_gpu.sh gpu-bundle/bin gpu-bundle/wheels
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-bundle && mkdir -p gpu-bundle/bin gpu-bundle/wheels
cargo build --release --quiet
test_bin=$(cargo test --release -p trainer --test cuda_kernels --no-run --message-format=json 2>/dev/null |
  python3 -c "import json,sys; print([j['executable'] for j in map(json.loads, sys.stdin) if j.get('executable') and 'cuda_kernels' in j['executable']][0])")
objcopy --strip-debug target/release/sparsecoder gpu-bundle/bin/sparsecoder
objcopy --strip-debug "$test_bin" gpu-bundle/bin/cuda_kernels
# The coder's imports (sparse_coder, config, fused_encoder, utils, xformers), pure Python only; binary ones
# (torch, triton, safetensors, tokenizers) are expected on a machine with PyTorch.
python3 -m pip download --quiet --no-deps -d gpu-bundle/wheels eai-sparsify==1.3.3 einops natsort simple-parsing \
  docstring-parser huggingface-hub accelerate transformers
du -sh gpu-bundle/bin gpu-bundle/wheels
