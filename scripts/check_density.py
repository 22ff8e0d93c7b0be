#!/usr/bin/env python3
"""Checks eval.json's per-latent histograms (density_histogram, mean_activation_histogram) with numpy alone:
each coder recomputed from sparsify's checkpoint files on the cache's held-out shards read by
scripts/read_shard.py: TopK(ReLU(encoder.weight·x' + encoder.bias)) (x' = x − b_dec for an SAE), each latent's
firing count and mean activation over all rows, binned by floor(log10) as eval bins them ("dead" for never).

  check_density.py CACHE EVAL_JSON RUN_DIR [--holdout-shards 1]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import Counter

import numpy as np
from safetensors.numpy import load_file


def section(shard, name, tmp):
    out = os.path.join(tmp, name + ".npy")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "read_shard.py"), shard, name, out],
                   check=True)
    return np.load(out)


def histogram(values):
    return dict(Counter("dead" if v <= 0 else str(math.floor(math.log10(v))) for v in values))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache")
    ap.add_argument("eval_json")
    ap.add_argument("run")
    ap.add_argument("--holdout-shards", type=int, default=1)
    a = ap.parse_args()
    manifest = json.load(open(os.path.join(a.cache, "manifest.json")))
    held = [os.path.join(a.cache, s["file"]) for s in manifest["shards"][-a.holdout_shards:]]
    report = json.load(open(a.eval_json))
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for c in report["coders"]:
            folder = os.path.join(a.run, c["name"])
            ours = json.load(open(os.path.join(folder, "sparsecoder.json")))
            cfg = json.load(open(os.path.join(folder, "cfg.json")))
            w = load_file(os.path.join(folder, "sae.safetensors"))
            sae = ours["config"]["kind"] == "sae"
            side = (ours.get("sae_on") or "mlp_out") if sae else "mlp_in"
            x = np.concatenate([section(s, side, tmp) for s in held])
            if sae:
                x = x - w["b_dec"]
            pre = np.maximum(x @ w["encoder.weight"].T + w["encoder.bias"], 0)
            k = cfg["k"]
            top = np.argpartition(-pre, k - 1, axis=-1)[:, :k]
            acts = np.zeros_like(pre)
            np.put_along_axis(acts, top, np.take_along_axis(pre, top, axis=-1), axis=-1)
            rows = acts.shape[0]
            density = histogram((acts > 0).sum(axis=0) / rows)
            mean = histogram(acts.astype(np.float64).sum(axis=0) / rows)
            same = density == c["density_histogram"] and mean == c["mean_activation_histogram"]
            ok &= same
            print(f"{'ok  ' if same else 'FAIL'} {c['name']}: {rows} rows; density {density}; mean activation {mean}"
                  + ("" if same else f"; eval.json: {c['density_histogram']} / {c['mean_activation_histogram']}"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
