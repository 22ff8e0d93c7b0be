#!/usr/bin/env python3
"""Peer for the training benchmarks: sparsify's SparseCoder training steps at the same shapes, on the PyTorch
CPU build (scripts/bench_train.sh) or on a GPU (scripts/bench_gpu.sh, DEVICE=cuda).

Usage: bench_train.py CACHE_DIR THREADS [LATENTS] [K] [BATCH] [STEPS] [DEVICE]

Runs what sparsify's trainer runs per batch for a skip transcoder: forward (FusedEncoder, TopK, embedding-bag
decoder, W_skip), FVU, backward, torch.optim.Adam step. Input rows are real MLP activations read from the
cache with scripts/read_shard.py. Prints tokens/s over STEPS steps after two warm-up steps.
"""
import os
import subprocess
import sys
import tempfile
import time

if "cuda" not in sys.argv[1:]:
    os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # no GPU: the eager decoder
import importlib.util
import types

import numpy as np
import torch

# Import the coder without sparsify/__init__.py, which pulls in its trainer (datasets, wandb, …) that this
# benchmark does not use, so an offline GPU machine needs only the coder's own dependencies.
_spec = importlib.util.find_spec("sparsify")
_pkg = types.ModuleType("sparsify")
_pkg.__path__ = list(_spec.submodule_search_locations)
sys.modules["sparsify"] = _pkg
from sparsify.config import SparseCoderConfig  # noqa: E402
from sparsify.sparse_coder import SparseCoder  # noqa: E402

cache, threads = sys.argv[1], int(sys.argv[2])
latents, k, batch, steps = (int(a) for a in (sys.argv[3:7] + ["18432", "32", "4096", "5"][len(sys.argv[3:7]):]))
device = sys.argv[7] if len(sys.argv) > 7 else "cpu"
torch.set_num_threads(threads)
torch.set_float32_matmul_precision("high")  # as sparsify's trainer: TF32 on GPUs
here = os.path.dirname(os.path.abspath(__file__))
with tempfile.TemporaryDirectory() as tmp:
    arrays = []
    for side in ("mlp_in", "mlp_out"):
        out = os.path.join(tmp, side + ".npy")
        subprocess.run([sys.executable, os.path.join(here, "read_shard.py"), os.path.join(cache, "shard-000000.bin"), side, out], check=True)
        arrays.append(torch.from_numpy(np.load(out)).to(device))
x_all, y_all = arrays
d = x_all.shape[1]
torch.manual_seed(0)
cfg = SparseCoderConfig(num_latents=latents, k=k, transcode=True, skip_connection=True)
sc = SparseCoder(d, cfg, device=device, dtype=torch.float32)
with torch.no_grad():  # sparsify's step-0 initialisation
    sc.b_dec.data = y_all[:batch].mean(0)
    sc.encoder.bias.data = -x_all[:batch].mean(0) @ sc.encoder.weight.data.T
opt = torch.optim.Adam(sc.parameters(), lr=2e-4 / (latents / 2**14) ** 0.5)


def step(i):
    s = (i * batch) % (len(x_all) - batch)
    out = sc(x_all[s:s + batch], y_all[s:s + batch])
    out.fvu.backward()
    opt.step()
    opt.zero_grad(set_to_none=False)
    return float(out.fvu)


def sync():
    if device != "cpu":
        torch.cuda.synchronize()


step(0)
step(1)
sync()
t = time.perf_counter()
for i in range(2, steps + 2):
    fvu = step(i)
sync()
dt = time.perf_counter() - t
where = torch.cuda.get_device_name() if device != "cpu" else f"{threads} threads"
print(f"sparsify (torch {torch.__version__}, {where}) SST d={d} latents={latents} k={k} batch={batch}: "
      f"{steps * batch / dt:.0f} tokens/s (fvu {fvu:.3f})")
