#!/usr/bin/env python3
"""Checks an export of `sparsecoder export` with the other tool's reading of it, on the held-out rows the
export carries (sparsecoder_sample.safetensors: our coder's input x, its latents and its output).

  check_exports.py saelens DIR...          each DIR a SAELens folder (cfg.json, sae_weights.safetensors)
  check_exports.py circuit-tracer DIR      a transcoder set (config.yaml, layer_i.safetensors)
  check_exports.py import ORIGINAL EXPORT --kind K --layer L
                                           an import: the published file ORIGINAL, read by its tool, against
                                           an export of our imported coder (its held-out sample rows)
  check_exports.py features SET --records L=latents.jsonl...
                                           a set's feature files, read as circuit-tracer's frontend reads them,
                                           against interp's records
  check_exports.py delphi HOOK_DIR --cache CACHE --coder CODER
                                           a latent cache (latents/<hookpoint>), against the coder recomputed in
                                           numpy on the cache's shards (scripts/read_shard.py)

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
    # JumpReLU rows are padded with (latent 0, activation 0): add, so that padding never overwrites latent 0.
    np.add.at(dense, (np.arange(idx.shape[0])[:, None], idx), acts)
    return dense


def rel(a, b):
    scale = float(np.abs(b).max()) or 1.0
    return float(np.abs(a - b).max()) / scale


def compare(name, theirs_acts, theirs_out, sample, prefix, at_threshold=None):
    """Latents and output against ours. `at_threshold` (JumpReLU): a mask of the (row, latent) whose
    pre-activation is within float rounding of its threshold, where f32 summation order alone decides; a
    latent active on one side only is accepted there, and its activation, and the output of its row, are
    left out of the error."""
    ours_acts = dense_latents(sample, prefix, theirs_acts.shape[1])
    ours_out = sample[prefix + "out"]
    differ = (theirs_acts > 0) != (ours_acts > 0)
    flips = differ & at_threshold if at_threshold is not None else np.zeros_like(differ)
    same_active = not (differ & ~flips).any()
    keep = ~flips.any(axis=1)
    e_acts = rel(np.where(flips, 0, theirs_acts), np.where(flips, 0, ours_acts))
    e_out = rel(theirs_out[keep], ours_out[keep]) if keep.any() else 0.0
    ok = same_active and e_acts < TOLERANCE and e_out < TOLERANCE
    flipped = f" ({int(flips.sum())} at their threshold within rounding)" if flips.any() else ""
    print(
        f"{'ok  ' if ok else 'FAIL'} {name}: {ours_out.shape[0]} rows, active latents "
        f"{'identical' if same_active else 'DIFFER'}{flipped}, latents rel err {e_acts:.2e}, "
        f"output rel err {e_out:.2e}"
    )
    return ok


# --- SAELens topk -------------------------------------------------------------------------------------

def saelens_numpy(folder):
    cfg = json.load(open(os.path.join(folder, "cfg.json")))
    if cfg["architecture"] != "topk":  # jumprelu, jumprelu_transcoder, jumprelu_skip_transcoder
        pre, threshold, dec = original_layout("saelens", folder, 0)
        return (lambda x: jumprelu(pre(x), threshold)), dec
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

    def decode(acts, x):
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

    def forward(acts, x):  # the tool's whole forward pass (a skip transcoder adds x·W_skipᵀ there)
        with torch.no_grad():
            return sae.forward(torch.from_numpy(x)).numpy()

    return encode, forward


def check_saelens(folders, reader):
    ok = True
    for folder in folders:
        sample = load_file(os.path.join(folder, "sparsecoder_sample.safetensors"))
        encode, decode = (saelens_tools if reader == "tools" else saelens_numpy)(folder)
        acts = encode(sample["x"])
        at_threshold = None
        if json.load(open(os.path.join(folder, "cfg.json")))["architecture"] != "topk":
            at_threshold = near_threshold(*original_layout("saelens", folder, 0)[:2], sample["x"])
        ok &= compare(f"saelens {folder}", acts, decode(acts, sample["x"]), sample, "", at_threshold)
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
            if k is None:  # a JumpReLU set: the loader builds JumpReLU from the threshold tensor
                return jumprelu(pre, w["activation_function.threshold"]), pre
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
    top_k = TopK(k) if k is not None else None
    layers = []
    for i in range(len(transcoders.transcoders)):
        t = transcoders.transcoders[i]
        if k is not None:  # TopK sets: the loader made ReLU; ours is ReLU then TopK (see the export's note)
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
    k = int(config["k"]) if config.get("activation") != "jumprelu" else None
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
        if k is not None:
            short = int(((pre > 0).sum(axis=1) < k).sum())
            print(f"     rows where plain TopK(k) would differ (fewer than k positive): {short} of {x.shape[0]}")
    return ok


# --- delphi latent caches ----------------------------------------------------------------------------

def read_section(shard, section, tmp):
    """A shard's section through scripts/read_shard.py, the numpy reader written from docs/cache-format.md."""
    import subprocess

    out = os.path.join(tmp, section + ".npy")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "read_shard.py"), shard, section, out],
                   check=True)
    return np.load(out)


def expected_firings(cache, coder):
    """The coder on every row of the cache, from the shards and sparsify's checkpoint files alone: TopK of
    ReLU(encoder.weight·x' + encoder.bias) (x' = x − b_dec for an SAE), grouped into whole sequences in shard
    order as the export numbers them. Returns (tokens [n, ctx_len], {(seq, pos, latent): act})."""
    import tempfile

    manifest = json.load(open(os.path.join(cache, "manifest.json")))
    ours = json.load(open(os.path.join(coder, "sparsecoder.json")))
    cfg = json.load(open(os.path.join(coder, "cfg.json")))
    w = load_file(os.path.join(coder, "sae.safetensors"))
    side = ours.get("sae_on") or "mlp_out" if ours["config"]["kind"] == "sae" else "mlp_in"
    ctx, k = manifest["ctx_len"], cfg["k"]
    rows = {"x": [], "token_ids": [], "seq_ids": [], "positions": []}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in manifest["shards"]:
            shard = os.path.join(cache, entry["file"])
            rows["x"].append(read_section(shard, side, tmp))
            for name in ("token_ids", "seq_ids", "positions"):
                rows[name].append(read_section(shard, name, tmp))
    x = np.concatenate(rows["x"])
    tok, seq, pos = (np.concatenate(rows[n]) for n in ("token_ids", "seq_ids", "positions"))
    if ours["config"]["kind"] == "sae":
        x = x - w["b_dec"]
    pre = np.maximum(x @ w["encoder.weight"].T + w["encoder.bias"], 0)
    top = np.argpartition(-pre, k - 1, axis=-1)[:, :k]
    acts = np.take_along_axis(pre, top, axis=-1)
    # The k-th and (k+1)-th pre-activations: where they nearly tie, another f32 summation order may keep the other.
    edge = -np.sort(-pre, axis=-1)[:, k - 1:k + 1]
    tokens, firings, ties, start = [], {}, set(), 0
    for r in range(1, len(seq) + 1):
        if r == len(seq) or seq[r] != seq[r - 1] or pos[r] != pos[r - 1] + 1:
            if r - start == ctx and pos[start] == 0:
                s = len(tokens)
                tokens.append(tok[start:r])
                for row in range(start, r):
                    if edge[row, 0] - edge[row, 1] <= 1e-5 * max(abs(edge[row, 0]), 1e-6):
                        ties.add((s, row - start))
                    for j in range(k):
                        if abs(acts[row, j]) > 1e-5:
                            firings[(s, row - start, int(top[row, j]))] = float(acts[row, j])
            start = r
    return np.stack(tokens).astype(np.int64), firings, ties


def delphi_files_numpy(hook_dir):
    """Each split file as delphi's TensorBuffer.load reads it: locations (latent + the file's first latent),
    activations, tokens."""
    for name in sorted(os.listdir(hook_dir)):
        if name.endswith(".safetensors"):
            t = load_file(os.path.join(hook_dir, name))
            loc = t["locations"].astype(np.int64)
            loc[:, 2] += int(name.split("_")[0])
            yield loc, t["activations"].astype(np.float32), t["tokens"].astype(np.int64)


def delphi_files_tools(hook_dir):
    from delphi.latents.loader import TensorBuffer

    for name in sorted(os.listdir(hook_dir)):
        if name.endswith(".safetensors"):
            loc, act, tok = TensorBuffer(os.path.join(hook_dir, name), os.path.basename(hook_dir)).load()
            yield loc.numpy(), act.float().numpy(), tok.numpy()


def check_delphi(hook_dir, cache, coder, reader):
    tokens, want, ties = expected_firings(cache, coder)
    got = {}
    for loc, act, tok in (delphi_files_tools if reader == "tools" else delphi_files_numpy)(hook_dir):
        assert np.array_equal(tok, tokens), "tokens differ"
        got.update({tuple(int(v) for v in l): float(a) for l, a in zip(loc, act)})
    common = set(got) & set(want)
    differ = set(got) ^ set(want)
    at_ties = sum(1 for c in differ if c[:2] in ties)
    err = max((abs(got[c] - want[c]) / max(abs(want[c]), 1e-3) for c in common), default=0.0)
    # f16 activations: half a unit in the last place is 2^-11 relative.
    ok = len(differ) == at_ties and err < 2 ** -10
    print(f"{'ok  ' if ok else 'FAIL'} delphi {hook_dir}: {tokens.shape[0]} sequences identical, {len(common)} "
          f"activations in both, {len(differ)} in one only ({at_ties} at a k-th/k+1-th tie within 1e-5), "
          f"max rel err {err:.2e} (f16)")
    if ok and reader == "tools":
        ok = delphi_records(hook_dir, want)
    return ok


def delphi_records(hook_dir, want):
    """delphi's LatentDataset builds records from the export: every example's activations are ours."""
    from delphi.config import ConstructorConfig, SamplerConfig
    from delphi.latents import LatentDataset

    class Tokens:  # the records need only batch_decode; none is called for the activations compared here
        def batch_decode(self, ids):
            return [str(i) for i in ids]

    raw_dir, module = os.path.split(hook_dir)
    ds = LatentDataset(raw_dir, SamplerConfig(n_examples_train=5, n_examples_test=5, n_quantiles=5),
                       ConstructorConfig(min_examples=1, example_ctx_len=16, n_non_activating=0,
                                         non_activating_source="random"),
                       tokenizer=Tokens(), modules=[module])
    tokens = ds.tokens.numpy()
    width = 16
    windows = {}
    for seq in range(tokens.shape[0]):
        for start in range(0, tokens.shape[1], width):
            windows.setdefault(tuple(tokens[seq, start:start + width]), []).append((seq, start))
    records = examples = wrong = 0
    for record in ds:
        records += 1
        latent = record.latent.latent_index
        for ex in record.train:
            examples += 1
            acts = ex.activations.float().numpy()

            def ours(seq, start):
                return np.array([want.get((seq, start + p, latent), 0.0) for p in range(width)], np.float32)

            places = windows.get(tuple(ex.tokens.numpy()), [])
            if not any(np.allclose(acts, ours(*w), rtol=2 ** -10, atol=1e-6) for w in places):
                wrong += 1
    print(f"{'ok  ' if wrong == 0 else 'FAIL'} delphi LatentDataset: {records} latent records, {examples} training "
          f"examples, {wrong} whose tokens and activations are not a window of ours")
    return records > 0 and examples > 0 and wrong == 0


# --- imports: the published file, read by its tool, against our imported coder ------------------------

def jumprelu(pre, threshold):
    return np.where(pre > threshold, pre, 0).astype(np.float32)


def near_threshold(pre, threshold, x):
    """The (row, latent) whose JumpReLU pre-activation is within float rounding of its threshold (1e-5 of the
    row's largest): where f32 summation order alone decides whether it fires."""
    p = pre(x)
    return np.abs(p - threshold) <= 1e-5 * np.abs(p).max(axis=1, keepdims=True)


def original_layout(kind, path, layer):
    """The published file as its layout defines it (module docs of interop/src/gemma_scope.rs and saelens.rs):
    (pre(x), threshold, decode(acts, x))."""
    if kind in ("gemma-scope", "gemma-scope-2"):
        w = dict(np.load(path)) if path.endswith(".npz") else load_file(path)
        w = {k.lower(): v for k, v in w.items()}
        skip = w.get("affine_skip_connection")
        return (lambda x: x @ w["w_enc"] + w["b_enc"], w["threshold"],
                lambda a, x: a @ w["w_dec"] + w["b_dec"] + (x @ skip if skip is not None else 0))
    if kind == "saelens":
        cfg = json.load(open(os.path.join(path, "cfg.json")))
        w = load_file(os.path.join(path, "sae_weights.safetensors"))
        b = w["b_dec"] * cfg.get("apply_b_dec_to_input", True) if "transcoder" not in cfg["architecture"] else 0
        return (lambda x: (x - b) @ w["W_enc"] + w["b_enc"], w["threshold"],
                lambda a, x: a @ w["W_dec"] + w["b_dec"] + (x @ w["W_skip"].T if "W_skip" in w else 0))
    if kind == "llama-scope":
        # As SAELens reads it (its Llama Scope loader, then fold_activation_norm_scaling_factor), with the
        # output's own factor for a transcoder.
        h = json.load(open(os.path.join(path, "hyperparams.json")))
        w = load_file(os.path.join(path, "checkpoints", "final.safetensors"))
        norms = h["dataset_average_activation_norm"]
        s_in, s_out = np.sqrt(h["d_model"]) / norms["in"], np.sqrt(h["d_model"]) / norms["out"]
        return (lambda x: s_in * (x @ w["encoder.weight"].T) + w["encoder.bias"],
                np.float32(h["jump_relu_threshold"] * s_in),
                lambda a, x: (a @ w["decoder.weight"].T + w["decoder.bias"]) / s_out)
    if kind == "circuit-tracer":
        w = load_file(os.path.join(path, f"layer_{layer}.safetensors"))
        return (lambda x: x @ w["W_enc"].T + w["b_enc"], w["activation_function.threshold"],
                lambda a, x: a @ w["W_dec"] + w["b_dec"] + (x @ w["W_skip"].T if "W_skip" in w else 0))
    raise SystemExit(f"unknown kind {kind}")


def original_numpy(kind, path, layer):
    pre, threshold, dec = original_layout(kind, path, layer)
    return (lambda x: jumprelu(pre(x), threshold)), dec


def original_tools(kind, path, layer):
    """The published file loaded by the tool that reads it: circuit-tracer for Gemma Scope transcoders and
    transcoder sets, SAELens for SAEs and SAELens folders."""
    import torch

    def wrap(encode, decode):
        def enc(x):
            with torch.no_grad():
                return encode(torch.from_numpy(x)).numpy()

        def dec(a, x):
            with torch.no_grad():
                return decode(torch.from_numpy(a), torch.from_numpy(x)).numpy()

        return enc, dec

    if kind == "gemma-scope" and "transcoder" in path:
        from circuit_tracer.transcoder.single_layer_transcoder import load_gemma_scope_transcoder
        t = load_gemma_scope_transcoder(path, layer, device=torch.device("cpu"))
        return wrap(t.encode, lambda a, x: t.decode(a, x))
    if kind == "gemma-scope":
        # SAELens's gemma_2_sae_huggingface_loader: keys w_* -> W_*, a jumprelu SAE reading x as it is.
        from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
        w = {("W_" + k[2:] if k.startswith("w_") else k): torch.tensor(v) for k, v in np.load(path).items()}
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=w["W_enc"].shape[0], d_sae=w["W_enc"].shape[1],
                                            apply_b_dec_to_input=False))
        sae.load_state_dict(w)
        return wrap(sae.encode, lambda a, x: sae.decode(a))
    if kind == "llama-scope" and "TC" not in os.path.basename(path.rstrip("/")):
        # SAELens: get_llama_scope_config_from_hf and llama_scope_sae_huggingface_loader (threshold scaled by
        # the norm factor, weights transposed), then SAE.from_pretrained's fold_activation_norm_scaling_factor.
        from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
        h = json.load(open(os.path.join(path, "hyperparams.json")))
        w = load_file(os.path.join(path, "checkpoints", "final.safetensors"))
        s = h["d_model"] ** 0.5 / h["dataset_average_activation_norm"]["in"]
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=h["d_model"], d_sae=h["d_sae"], apply_b_dec_to_input=False))
        sae.load_state_dict({"W_enc": torch.tensor(w["encoder.weight"].T.copy()),
                             "W_dec": torch.tensor(w["decoder.weight"].T.copy()),
                             "b_enc": torch.tensor(w["encoder.bias"]), "b_dec": torch.tensor(w["decoder.bias"]),
                             "threshold": torch.ones(h["d_sae"]) * h["jump_relu_threshold"] * s})
        sae.fold_activation_norm_scaling_factor(s)
        return wrap(sae.encode, lambda a, x: sae.decode(a))
    if kind == "llama-scope":  # transcoders: SAELens has no reader for them
        return original_numpy(kind, path, layer)
    if kind == "gemma-scope-2":
        from circuit_tracer.transcoder.single_layer_transcoder import load_gemma_scope_2_transcoder
        t = load_gemma_scope_2_transcoder(path, layer, device=torch.device("cpu"))
        return wrap(t.encode, lambda a, x: t.decode(a, x))
    if kind == "saelens":
        return saelens_tools(path)
    if kind == "circuit-tracer":
        from circuit_tracer.utils.hf_utils import load_transcoder_from_hub
        ts, _ = load_transcoder_from_hub(os.path.abspath(path), device=torch.device("cpu"))
        t = ts.transcoders[layer]
        return wrap(t.encode, lambda a, x: t.decode(a, x))
    raise SystemExit(f"unknown kind {kind}")


def check_import(kind, original, exported, layer, reader):
    """`exported`: an export of our imported coder (its sample file holds our latents and output on held-out
    rows); the original file, read by its tool (or its layout's formulas), must give the same on those rows."""
    sample = load_file(os.path.join(exported, "sparsecoder_sample.safetensors"))
    prefix = f"layer_{layer}." if f"layer_{layer}.x" in sample else ""
    enc, dec = (original_tools if reader == "tools" else original_numpy)(kind, original, layer)
    x = sample[prefix + "x"]
    acts = enc(x)
    pre, threshold, _ = original_layout(kind, original, layer)
    at_threshold = near_threshold(pre, threshold, x)
    return compare(f"import {kind} {original}", acts, dec(acts, x), sample, prefix, at_threshold)


# --- circuit-tracer feature files ---------------------------------------------------------------------

def cantor_unpair(z):
    """util.js cantorUnpair."""
    w = int((np.sqrt(8 * z + 1) - 1) // 2)
    t = (w * w + w) // 2
    return w - (z - t), z - t


def frontend_feature(features_dir, feature_id):
    """A feature as init-feature-examples.js loadFeatureFromBinary reads it: index.json.gz (pako.inflate
    auto-detects gzip), the layer's offsets, the byte range offsets[f]..offsets[f+1] inclusive, a u32 LE length,
    then pako.inflate (zlib) of that many bytes, parsed as JSON."""
    import gzip
    import zlib

    layer, feat = cantor_unpair(feature_id)
    index = json.loads(gzip.decompress(open(os.path.join(features_dir, "index.json.gz"), "rb").read()))
    offsets = index[layer]["offsets"]
    data = open(os.path.join(features_dir, index[layer]["filename"]), "rb").read()
    chunk = data[offsets[feat]:offsets[feat + 1] + 1]
    length = int.from_bytes(chunk[:4], "little")
    return json.loads(zlib.decompress(chunk[4:4 + length]).decode())


def check_features(set_dir, records):
    features_dir = os.path.join(set_dir, "features")
    ok, shown = True, 0
    for arg in records:
        layer, path = arg.split("=", 1)
        layer = int(layer)
        for line in open(path):
            r = json.loads(line)
            feat = r["latent"]
            z = (layer + feat) * (layer + feat + 1) // 2 + feat
            f = frontend_feature(features_dir, z)
            # Examples grouped by quantile, strongest first; each one's tokens and activations (f32 both sides).
            got = [(q["quantile_name"], e["tokens"], np.float32(e["tokens_acts_list"]))
                   for q in f["examples_quantiles"] for e in q["examples"]]
            want = sorted([(f"Quantile {w['quantile'] or 0}", w["tokens"], np.float32(w["acts"]))
                           for w in r["explain_examples"]], key=lambda w: -int(w[0].split()[1]))
            same = (f["index"] == feat and f["layer"] == layer and len(got) == len(want)
                    and all(g[0] == w[0] and g[1] == w[1] and np.array_equal(g[2], w[2]) for g, w in zip(got, want)))
            if r["explain_examples"]:
                legacy = json.load(open(os.path.join(features_dir, f"{z}.json")))
                same &= legacy == f
                shown += 1
            if not same:
                print(f"FAIL feature layer {layer} latent {feat}: examples differ from {path}")
                ok = False
    print(f"{'ok  ' if ok else 'FAIL'} features {features_dir}: {shown} features with examples read as the "
          f"frontend reads them, equal to interp's records")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("format", choices=["saelens", "circuit-tracer", "delphi", "import", "features"])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--reader", choices=["numpy", "tools"], default="numpy")
    ap.add_argument("--cache", help="delphi: the cache the export was made from")
    ap.add_argument("--coder", help="delphi: the coder folder the export was made from")
    ap.add_argument("--kind", choices=["gemma-scope", "gemma-scope-2", "saelens", "circuit-tracer", "llama-scope"],
                    help="import: the original's layout (dirs: ORIGINAL EXPORT_OF_OUR_IMPORT)")
    ap.add_argument("--layer", type=int, default=0, help="import: the original's layer")
    ap.add_argument("--records", nargs="*", default=[], help="features: LAYER=latents.jsonl, as given to export")
    a = ap.parse_args()
    if a.format == "features":
        ok = check_features(a.dirs[0], a.records)
    elif a.format == "import":
        ok = check_import(a.kind, a.dirs[0], a.dirs[1], a.layer, a.reader)
    elif a.format == "delphi":
        ok = all([check_delphi(d, a.cache, a.coder, a.reader) for d in a.dirs])
    elif a.format == "saelens":
        ok = check_saelens(a.dirs, a.reader)
    else:
        ok = all([check_circuit_tracer(d, a.reader) for d in a.dirs])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
