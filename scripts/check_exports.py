#!/usr/bin/env python3
"""Checks an export of `sparsecoder export` with the other tool's reading of it, on the held-out rows the
export carries (sparsecoder_sample.safetensors: our coder's input x, its latents and its output).

  check_exports.py saelens DIR...          each DIR a SAELens folder (cfg.json, sae_weights.safetensors)
  check_exports.py circuit-tracer DIR      a transcoder set (config.yaml, layer_i.safetensors)

--reader tools   loads with the tools' own code: SAELens's SAE.load_from_disk, circuit-tracer's
                 load_transcoder_from_hub (needs their venv: scripts/check_exports.sh makes it)
--reader numpy   (default) a reader written from those tools' source, with numpy only, for CI: SAELens topk
                 (saes/topk_sae.py, saes/sae.py process_sae_in) and circuit-tracer
                 (transcoder/single_layer_transcoder.py encode/decode, activation_functions.TopK)

Compares latents and output with ours (max |diff| / max |ours| < 1e-5 in f32) and the active latent sets, and
prints one line per coder. Exits non-zero on any mismatch.
"""
import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

TOLERANCE = 1e-5


def dense_latents(sample, prefix, d_sae):
    idx = sample[prefix + "latent_idx"].astype(np.int64)
    acts = sample[prefix + "latent_acts"]
    dense = np.zeros((idx.shape[0], d_sae), dtype=np.float32)
    np.put_along_axis(dense, idx, acts, axis=1)
    return dense


def rel(a, b):
    scale = float(np.abs(b).max()) or 1.0
    return float(np.abs(a - b).max()) / scale


def compare(name, theirs_acts, theirs_out, sample, prefix):
    ours_acts = dense_latents(sample, prefix, theirs_acts.shape[1])
    ours_out = sample[prefix + "out"]
    same_active = np.array_equal(theirs_acts > 0, ours_acts > 0)
    e_acts, e_out = rel(theirs_acts, ours_acts), rel(theirs_out, ours_out)
    ok = same_active and e_acts < TOLERANCE and e_out < TOLERANCE
    print(
        f"{'ok  ' if ok else 'FAIL'} {name}: {ours_out.shape[0]} rows, active latents "
        f"{'identical' if same_active else 'DIFFER'}, latents rel err {e_acts:.2e}, output rel err {e_out:.2e}"
    )
    return ok


# --- SAELens topk -------------------------------------------------------------------------------------

def saelens_numpy(folder):
    cfg = json.load(open(os.path.join(folder, "cfg.json")))
    assert cfg["architecture"] == "topk", cfg["architecture"]
    w = load_file(os.path.join(folder, "sae_weights.safetensors"))
    k = cfg["k"]

    def encode(x):
        sae_in = x - w["b_dec"] * cfg.get("apply_b_dec_to_input", True)
        pre = sae_in @ w["W_enc"] + w["b_enc"]
        if cfg.get("rescale_acts_by_decoder_norm", False):
            pre = pre * np.linalg.norm(w["W_dec"], axis=-1)
        top = np.argpartition(-pre, k - 1, axis=-1)[:, :k]
        acts = np.zeros_like(pre)
        np.put_along_axis(acts, top, np.maximum(np.take_along_axis(pre, top, axis=-1), 0), axis=-1)
        return acts

    def decode(acts):
        if cfg.get("rescale_acts_by_decoder_norm", False):
            acts = acts / np.linalg.norm(w["W_dec"], axis=-1)
        return acts @ w["W_dec"] + w["b_dec"]

    return encode, decode


def saelens_tools(folder):
    import torch
    from sae_lens import SAE

    sae = SAE.load_from_disk(folder, device="cpu")

    def encode(x):
        with torch.no_grad():
            return sae.encode(torch.from_numpy(x)).numpy()

    def decode(acts):
        with torch.no_grad():
            return sae.decode(torch.from_numpy(acts)).numpy()

    return encode, decode


def check_saelens(folders, reader):
    ok = True
    for folder in folders:
        sample = load_file(os.path.join(folder, "sparsecoder_sample.safetensors"))
        encode, decode = (saelens_tools if reader == "tools" else saelens_numpy)(folder)
        acts = encode(sample["x"])
        ok &= compare(f"saelens {folder}", acts, decode(acts), sample, "")
        sparsity = load_file(os.path.join(folder, "sparsity.safetensors"))["sparsity"]
        print(f"     sparsity: {sparsity.shape[0]} latents, log10 density {sparsity.min():.2f}…{sparsity.max():.2f}")
    return ok


# --- circuit-tracer transcoder sets --------------------------------------------------------------------

def circuit_tracer_numpy(folder, k):
    """Each layer as circuit-tracer computes it: F.linear(x, W_enc, b_enc), then the activation function
    (here relu(TopK(k)), as the export's config says), acts @ W_dec + b_dec + x @ W_skip.T."""
    layers = []
    i = 0
    while os.path.exists(os.path.join(folder, f"layer_{i}.safetensors")):
        w = load_file(os.path.join(folder, f"layer_{i}.safetensors"))

        def encode(x, w=w):
            pre = x @ w["W_enc"].T + w["b_enc"]
            top = np.argpartition(-pre, k - 1, axis=-1)[:, :k]
            gate = np.zeros_like(pre)
            np.put_along_axis(gate, top, 1.0, axis=-1)
            return np.maximum(pre * gate, 0), pre

        def decode(acts, x, w=w):
            out = acts @ w["W_dec"] + w["b_dec"]
            return out + x @ w["W_skip"].T if "W_skip" in w else out

        layers.append((encode, decode))
        i += 1
    return layers


def circuit_tracer_tools(folder, k):
    import torch
    import torch.nn.functional as F
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.utils.hf_utils import load_transcoder_from_hub

    transcoders, _ = load_transcoder_from_hub(os.path.abspath(folder), device=torch.device("cpu"))
    top_k = TopK(k)
    layers = []
    for i in range(len(transcoders.transcoders)):
        t = transcoders.transcoders[i]
        t.activation_function = lambda pre: F.relu(top_k(pre))

        def encode(x, t=t):
            with torch.no_grad():
                x = torch.from_numpy(x)
                return t.encode(x).numpy(), t.encode(x, apply_activation_function=False).numpy()

        def decode(acts, x, t=t):
            with torch.no_grad():
                return t.decode(torch.from_numpy(acts), torch.from_numpy(x)).numpy()

        layers.append((encode, decode))
    return layers


def check_circuit_tracer(folder, reader):
    import yaml

    config = yaml.safe_load(open(os.path.join(folder, "config.yaml")))
    k = int(config["k"])
    sample = load_file(os.path.join(folder, "sparsecoder_sample.safetensors"))
    make = circuit_tracer_tools if reader == "tools" else circuit_tracer_numpy
    ok = True
    for i, (encode, decode) in enumerate(make(folder, k)):
        prefix = f"layer_{i}."
        x = sample[prefix + "x"]
        acts, pre = encode(x)
        ok &= compare(f"circuit-tracer {folder} layer {i}", acts, decode(acts, x), sample, prefix)
        # circuit-tracer's own TopK keeps negative values: it differs from ours only on rows with fewer
        # than k positive pre-activations.
        short = int(((pre > 0).sum(axis=1) < k).sum())
        print(f"     rows where plain TopK(k) would differ (fewer than k positive): {short} of {x.shape[0]}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("format", choices=["saelens", "circuit-tracer"])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--reader", choices=["numpy", "tools"], default="numpy")
    a = ap.parse_args()
    if a.format == "saelens":
        ok = check_saelens(a.dirs, a.reader)
    else:
        ok = all([check_circuit_tracer(d, a.reader) for d in a.dirs])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
