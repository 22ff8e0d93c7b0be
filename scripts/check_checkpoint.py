#!/usr/bin/env python3
"""Recompute a checkpoint's forward pass with numpy + safetensors alone, from sparsify's formulas.

Usage: check_checkpoint.py CODER_DIR X.f32 ROWS OUT.f32

Reads cfg.json and sae.safetensors as sparsify writes them, takes ROWS input rows from X.f32 (raw little-endian
float32, row-major [ROWS × d_in]) and writes the coder's output [ROWS × d_out] to OUT.f32:
    x' = x - b_dec (SAE) or x (transcoder);  pre = ReLU(x' W_enc^T + b_enc);  keep the k largest per row;
    out = acts · W_dec[idx] + b_dec (+ x W_skip^T with a skip connection)
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

coder, xfile, rows, outfile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cfg = json.load(open(os.path.join(coder, "cfg.json")))
t = load_file(os.path.join(coder, "sae.safetensors"))
w_enc, b_enc, w_dec, b_dec = (t[n].astype(np.float64) for n in ("encoder.weight", "encoder.bias", "W_dec", "b_dec"))
x = np.fromfile(xfile, dtype="<f4").reshape(rows, cfg["d_in"]).astype(np.float64)
num_latents = cfg["num_latents"] or cfg["d_in"] * cfg["expansion_factor"]
assert w_enc.shape == (num_latents, cfg["d_in"]), w_enc.shape
xc = x if cfg["transcode"] else x - b_dec
pre = np.maximum(xc @ w_enc.T + b_enc, 0.0)
k = cfg["k"]
idx = np.argpartition(-pre, k - 1, axis=1)[:, :k]
acts = np.take_along_axis(pre, idx, axis=1)
out = np.einsum("rk,rkd->rd", acts, w_dec[idx]) + b_dec
if cfg["skip_connection"]:
    out += x @ t["W_skip"].astype(np.float64).T
out.astype("<f4").tofile(outfile)
