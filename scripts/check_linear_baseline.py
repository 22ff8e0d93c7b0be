#!/usr/bin/env python3
"""Checks `sparsecoder eval --linear-baseline` with numpy alone: refits the ridge map mlp_in -> mlp_out on the
cache's training shards at the lambda eval chose, and compares the held-out FVU with eval.json's.

Usage: check_linear_baseline.py CACHE_DIR EVAL_JSON [HOLDOUT_SHARDS]

Shards are read with scripts/read_shard.py (written from docs/cache-format.md). The ridge term is
lambda * mean(diag(X^T X)) on the weights, none on the bias; the system is solved by least squares on stacked
ridge rows (QR), not by the normal equations eval uses. Prints both FVUs; exits 1 if they differ by more than
1e-4 relative.
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np


def side(shard, section, tmp):
    out = pathlib.Path(tmp) / f"{section}.npy"
    script = pathlib.Path(__file__).with_name("read_shard.py")
    subprocess.run([sys.executable, str(script), str(shard), section, str(out)], check=True)
    return np.load(out).astype(np.float64)


def main():
    cache, report = pathlib.Path(sys.argv[1]), json.load(open(sys.argv[2]))
    holdout = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    lin = report["linear_baseline"]
    shards = [cache / s["file"] for s in json.load(open(cache / "manifest.json"))["shards"]]
    train, held = shards[:-holdout], shards[-holdout:]
    with tempfile.TemporaryDirectory() as tmp:
        load = lambda files: [np.vstack([side(f, s, tmp) for f in files]) for s in ("mlp_in", "mlp_out")]
        (x, y), (hx, hy) = load(train), load(held)
    d = x.shape[1]
    xt = np.hstack([x, np.ones((len(x), 1))])
    reg = np.zeros((d + 1, d + 1))
    reg[:d, :d] = np.sqrt(lin["lambda"] * np.mean(np.sum(x * x, axis=0))) * np.eye(d)
    w = np.linalg.lstsq(np.vstack([xt, reg]), np.vstack([y, np.zeros((d + 1, y.shape[1]))]), rcond=None)[0]
    pred = np.hstack([hx, np.ones((len(hx), 1))]) @ w
    fvu = np.sum((pred - hy) ** 2) / np.sum((hy - hy.mean(axis=0)) ** 2)
    print(f"held-out FVU: numpy {fvu:.6f}, eval {lin['fvu']:.6f} (lambda {lin['lambda']:g}, {len(x)} training rows)")
    sys.exit(0 if abs(fvu - lin["fvu"]) <= 1e-4 * fvu else 1)


if __name__ == "__main__":
    main()
