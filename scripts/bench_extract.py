#!/usr/bin/env python3
"""Peer for the extraction benchmark: transformers' CPU forward, truncated after layer LAYER, on the token ids
of an existing cache (so both sides see the same tokens). Prints tokens/s of the forward passes alone.

Usage: bench_extract.py CACHE_DIR LAYER THREADS
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM

cache, layer, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
manifest = json.load(open(os.path.join(cache, "manifest.json")))
ctx = manifest["ctx_len"]
here = os.path.dirname(os.path.abspath(__file__))
ids = []
with tempfile.TemporaryDirectory() as tmp:
    for shard in sorted(glob.glob(os.path.join(cache, "shard-*.bin"))):
        out = os.path.join(tmp, "t.npy")
        subprocess.run([sys.executable, os.path.join(here, "read_shard.py"), shard, "token_ids", out], check=True)
        ids.append(np.load(out))
tokens = torch.from_numpy(np.concatenate(ids)).reshape(-1, ctx)
model = AutoModelForCausalLM.from_pretrained(os.path.join(here, "..", "models"),
                                             gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32)
model.model.layers = model.model.layers[: layer + 1]
captured = []
model.model.layers[layer].mlp.register_forward_hook(lambda m, i, o: captured.append((i[0], o)))
batch = 8
with torch.inference_mode():
    model.model(tokens[:batch])  # warm-up
    captured.clear()
    t = time.perf_counter()
    for s in range(0, len(tokens), batch):
        model.model(tokens[s:s + batch])
        captured.clear()
    dt = time.perf_counter() - t
print(f"transformers {torch.__version__} forward to layer {layer}, {threads} threads: "
      f"{tokens.numel()} tokens in {dt:.2f} s = {tokens.numel() / dt:.0f} tokens/s")
