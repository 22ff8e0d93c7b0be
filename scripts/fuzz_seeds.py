#!/usr/bin/env python3
"""Seed inputs for fuzz/fuzz_targets/checkpoint.rs: a tiny SAE, transcoder and skip transcoder (d 4, 8 latents,
k 2) as the target reads them: two little-endian u16 lengths, sparsecoder.json, cfg.json, sae.safetensors.

    python3 scripts/fuzz_seeds.py fuzz/corpus/checkpoint
    cd fuzz && cargo +nightly fuzz run -O checkpoint corpus/checkpoint -- -runs=10000000 -max_len=4096
"""
import json
import os
import struct
import sys

import numpy as np
from safetensors.numpy import save

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for kind, skip, transcode in [("sae", False, False), ("transcoder", False, True), ("skip-transcoder", True, True)]:
    d, n, k = 4, 8, 2
    meta = {"config": {"kind": kind, "d_in": d, "d_out": d, "num_latents": n, "k": k},
            "sae_on": "mlp_out" if kind == "sae" else None, "cache": "c", "layer": 1, "step": 1, "tokens": 1}
    cfg = {"activation": "topk", "d_in": d, "expansion_factor": 2, "k": k, "multi_topk": False,
           "normalize_decoder": False, "num_latents": n, "skip_connection": skip, "transcode": transcode}
    tensors = {"encoder.weight": np.ones((n, d), np.float32), "encoder.bias": np.zeros(n, np.float32),
               "W_dec": np.ones((n, d), np.float32), "b_dec": np.zeros(d, np.float32)}
    if skip:
        tensors["W_skip"] = np.eye(d, dtype=np.float32)
    m, c = json.dumps(meta).encode(), json.dumps(cfg).encode()
    with open(os.path.join(out, f"seed-{kind}"), "wb") as f:
        f.write(struct.pack("<HH", len(m), len(c)) + m + c + save(tensors))
