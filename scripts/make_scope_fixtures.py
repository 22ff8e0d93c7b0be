#!/usr/bin/env python3
"""Small coders in the exact layouts of published releases, for `sparsecoder import`'s tests: random weights,
thresholds set from real activations so that a few percent of latents fire, files laid out as the releases
and the tools' loaders have them (../shared/reference/peer-formats.md §6; SAELens's gemma_2 / gemma_3 loaders,
circuit-tracer's load_gemma_scope_transcoder / load_gemma_scope_2_transcoder / load_relu_transcoder).

  make_scope_fixtures.py ROWS_IN.npy ROWS_OUT.npy OUT_DIR [--latents 1152] [--layer 1] [--seed 0]

ROWS_IN / ROWS_OUT: an MLP's input and output rows (scripts/read_shard.py writes them from a cache shard).
Writes, under OUT_DIR:
  gemma-scope-2b-pt-transcoders/layer_L/width_1k/average_l0_35/params.npz   Gemma Scope 1 transcoder (np.savez)
  gemma-scope-2b-pt-mlp/layer_L/width_1k/average_l0_35/params.npz           Gemma Scope 1 MLP-out SAE (compressed)
  gemma-scope-2-pt/transcoder_all/layer_L_width_1k_l0_small_affine/params.safetensors
                                                                            Gemma Scope 2 skip transcoder
  saelens-jumprelu-skip-transcoder/{cfg.json,sae_weights.safetensors}       SAELens v6 folder
  circuit-tracer-jumprelu/{config.yaml,layer_0.safetensors,layer_1.safetensors}  JumpReLU transcoder set
  llama-scope/Llama3_1-8B-Base-L{L}{M,TC}-8x/{hyperparams.json,checkpoints/final.safetensors}
                                                                            Llama Scope MLP SAE and transcoder
"""
import argparse
import json
import os

import numpy as np
from safetensors.numpy import save_file

FIRING = 0.97  # thresholds at this quantile of each latent's pre-activation: about 3 % of rows fire


def coder(rng, x, d_out, latents, skip):
    d_in = x.shape[1]
    w_enc = (rng.standard_normal((d_in, latents)) / np.sqrt(d_in) / x.std()).astype(np.float32)
    b_enc = (0.01 * rng.standard_normal(latents)).astype(np.float32)
    pre = x @ w_enc + b_enc
    threshold = np.maximum(np.quantile(pre, FIRING, axis=0), 1e-3).astype(np.float32)
    p = {
        "w_enc": w_enc,
        "w_dec": (rng.standard_normal((latents, d_out)) / np.sqrt(latents)).astype(np.float32),
        "b_enc": b_enc,
        "b_dec": (0.01 * rng.standard_normal(d_out)).astype(np.float32),
        "threshold": threshold,
    }
    if skip:
        p["affine_skip_connection"] = (0.1 * rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(np.float32)
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows_in")
    ap.add_argument("rows_out")
    ap.add_argument("out")
    ap.add_argument("--latents", type=int, default=1152)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    x_in, x_out = np.load(a.rows_in), np.load(a.rows_out)
    d, L, layer = x_in.shape[1], a.latents, a.layer

    def folder(*parts):
        path = os.path.join(a.out, *parts)
        os.makedirs(path, exist_ok=True)
        return path

    # Gemma Scope 1: uppercase W_ keys in params.npz, W_enc [d_model, d_sae].
    tc = coder(rng, x_in, d, L, skip=False)
    np.savez(os.path.join(folder("gemma-scope-2b-pt-transcoders", f"layer_{layer}", "width_1k", "average_l0_35"),
                          "params.npz"),
             W_enc=tc["w_enc"], W_dec=tc["w_dec"], b_enc=tc["b_enc"], b_dec=tc["b_dec"], threshold=tc["threshold"])
    sae = coder(rng, x_out, d, L, skip=False)
    np.savez_compressed(os.path.join(folder("gemma-scope-2b-pt-mlp", f"layer_{layer}", "width_1k", "average_l0_35"),
                                     "params.npz"),
                        W_enc=sae["w_enc"], W_dec=sae["w_dec"], b_enc=sae["b_enc"], b_dec=sae["b_dec"],
                        threshold=sae["threshold"])
    # Gemma Scope 2: lowercase keys in params.safetensors, the affine skip [d_in, d_out].
    sst = coder(rng, x_in, d, L, skip=True)
    save_file(sst, os.path.join(folder("gemma-scope-2-pt", "transcoder_all",
                                       f"layer_{layer}_width_1k_l0_small_affine"), "params.safetensors"))
    # SAELens v6 jumprelu_skip_transcoder: W_enc [d_in, d_sae], W_dec [d_sae, d_out], W_skip [d_out, d_in].
    sl = coder(rng, x_in, d, L, skip=True)
    path = folder("saelens-jumprelu-skip-transcoder")
    save_file({"W_enc": sl["w_enc"], "W_dec": sl["w_dec"], "b_enc": sl["b_enc"], "b_dec": sl["b_dec"],
               "threshold": sl["threshold"], "W_skip": np.ascontiguousarray(sl["affine_skip_connection"].T)},
              os.path.join(path, "sae_weights.safetensors"))
    json.dump({"architecture": "jumprelu_skip_transcoder", "d_in": d, "d_out": d, "d_sae": L, "dtype": "float32",
               "device": "cpu", "apply_b_dec_to_input": False, "normalize_activations": "none",
               "reshape_activations": "none",
               "metadata": {"model_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
                            "hook_name": f"blocks.{layer}.ln2.hook_normalized",
                            "hook_name_out": f"blocks.{layer}.hook_mlp_out"}},
              open(os.path.join(path, "cfg.json"), "w"), indent=2)
    # Llama Scope (old lm-saes layout): torch Linear weights, one scalar threshold, dataset-wise norms.
    for name, x, hook_in in (("M", x_out, f"blocks.{layer}.hook_mlp_out"), ("TC", x_in, f"blocks.{layer}.ln2.hook_normalized")):
        norm_in = float(np.linalg.norm(x, axis=1).mean())
        norm_out = float(np.linalg.norm(x_out, axis=1).mean())
        s_in = np.sqrt(d) / norm_in
        p = coder(rng, x * s_in, d, L, skip=False)
        # SAELens compares pre = s_in·(W·x) + b with s_in·jump_relu_threshold.
        theta = float(np.median(p["threshold"])) / s_in
        path = folder("llama-scope", f"Llama3_1-8B-Base-L{layer}{name}-8x")
        checkpoints = folder("llama-scope", f"Llama3_1-8B-Base-L{layer}{name}-8x", "checkpoints")
        save_file({"encoder.weight": np.ascontiguousarray(p["w_enc"].T), "encoder.bias": p["b_enc"],
                   "decoder.weight": np.ascontiguousarray(p["w_dec"].T), "decoder.bias": p["b_dec"]},
                  os.path.join(checkpoints, "final.safetensors"))
        json.dump({"d_model": d, "d_sae": L, "hook_point_in": hook_in, "hook_point_out": f"blocks.{layer}.hook_mlp_out",
                   "act_fn": "jumprelu", "jump_relu_threshold": theta, "norm_activation": "dataset-wise",
                   "dataset_average_activation_norm": {"in": norm_in, "out": norm_out}},
                  open(os.path.join(path, "hyperparams.json"), "w"), indent=2)
    # circuit-tracer JumpReLU set, layers 0 and 1: W_enc [d_sae, d_model], activation_function.threshold.
    path = folder("circuit-tracer-jumprelu")
    for i in range(2):
        p = coder(rng, x_in, d, L, skip=True)
        save_file({"W_enc": np.ascontiguousarray(p["w_enc"].T), "W_dec": p["w_dec"], "b_enc": p["b_enc"],
                   "b_dec": p["b_dec"], "W_skip": np.ascontiguousarray(p["affine_skip_connection"].T),
                   "activation_function.threshold": p["threshold"]},
                  os.path.join(path, f"layer_{i}.safetensors"))
    with open(os.path.join(path, "config.yaml"), "w") as f:
        f.write("model_kind: transcoder_set\nfeature_input_hook: mlp.hook_in\nfeature_output_hook: hook_mlp_out\n"
                "scan: fixture-jumprelu\n")


if __name__ == "__main__":
    main()
