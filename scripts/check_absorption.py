#!/usr/bin/env python3
"""Feature absorption (`sparsecoder eval --absorption`) against SAEBench 0.6.0's own code on the same words.

    check_absorption.py EVAL_DIR MODEL_GGUF RUN_DIR...

EVAL_DIR holds our absorption.json (vocabulary, prompts, letter probes, k-sparse probes, main latents, per-word
absorption); the RUN_DIRs the coders (sparsify's cfg.json + sae.safetensors). Independently of our code:

  1. vocabulary: SAEBench's `get_alpha_tokens` on transformers' tokenizer of the GGUF, against our word list;
  2. prompts: SAEBench's `create_icl_prompt` given each prompt's word and in-context examples, against our text;
     transformers' token ids (BOS first, as HookedTransformer prepends it) against ours;
  3. activations: transformers runs the GGUF (f32) on every prompt and takes the MLP input/output at the
     prompt's token 6 from the end;
  4. letter probes: SAEBench's `train_linear_probe_for_task` on those activations with our train/test split,
     twice (torch seeds 0 and 1), test F1 per letter as `build_metrics_df` computes it. Its training is
     stochastic (init, shuffles), so ours is compared with the spread of SAEBench's own two runs;
  5. k-sparse probes: given our L1 probe's choice of latents, SAEBench's classifier (scikit-learn's
     LogisticRegression, max_iter 500, balanced) is fit and scored as in `train_k_sparse_probes` /
     `build_metrics_df`; and `add_feature_splits_to_metrics_df` on those F1s gives the main latents. SAEBench's
     own L1 probe is also trained (`train_k_sparse_probes`) and its k-sparse F1 compared in the mean;
  6. absorption: SAEBench's `FeatureAbsorptionCalculator.calculate_absorption` on our absorption prompts (its
     `_build_prompts` given ours: it draws its examples with Python's RNG), with our letter probe's direction,
     our main latents and the coder wrapped (its `W_dec` the latent direction we used: the decoder for an SAE,
     the encoder for a transcoder), per word against ours; then SAEBench's `_aggregate_results_df` per letter.

SAEBench's `run_eval` cannot run offline (HookedTransformer.from_pretrained downloads the model; SmolLM2 is
not among its models either); this feeds its functions directly. Its calculator refuses a letter whose prompts
differ in token count (it reads position −6 of a right-padded batch); our prompts read each prompt's own
position, so the check gives it each prompt's last six positions and counts the letters it would have refused.
Prints one `ok`/`FAIL` line per check; exit status 1 on any FAIL.
"""
import json
import os
import sys
import warnings

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from transformers import AutoModelForCausalLM, AutoTokenizer

from sae_bench.evals.absorption import k_sparse_probing as ksp
from sae_bench.evals.absorption import main as absorption_main
from sae_bench.evals.absorption.feature_absorption_calculator import FeatureAbsorptionCalculator
from sae_bench.evals.absorption.probing import LinearProbe, train_linear_probe_for_task
from sae_bench.evals.absorption.prompting import SpellingPrompt, create_icl_prompt, first_letter_formatter
from sae_bench.evals.absorption.vocab import LETTERS, get_alpha_tokens
from sae_bench.evals.absorption import feature_absorption as fa

warnings.filterwarnings("ignore")
failures = 0
TEMPLATE = "{word} has the first letter:"


def report(ok, line):
    global failures
    failures += not ok
    print(("ok   " if ok else "FAIL ") + line, flush=True)


class Cfg:
    def __init__(self, d_sae):
        self.d_sae = d_sae


class Coder:
    """A coder from sparsify's files with the SAE interface SAEBench's absorption code calls."""

    def __init__(self, folder, direction):
        cfg = json.load(open(os.path.join(folder, "cfg.json")))
        w = load_file(os.path.join(folder, "sae.safetensors"))
        self.k = cfg["k"]
        enc = w["encoder.weight"].float()
        self.b_enc = w["encoder.bias"].float()
        self.shift = None if cfg["transcode"] else w["b_dec"].float()
        self.W_enc = enc.T.contiguous()
        self.W_dec = enc if direction == "encoder" else w["W_dec"].float()
        self.cfg = Cfg(enc.shape[0])
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def encode(self, x):
        x = x.float()
        if self.shift is not None:
            x = x - self.shift
        pre = torch.relu(x @ self.W_enc + self.b_enc)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)


def word_activations(model, layer, prompts):
    """Per prompt, the MLP input and output at its last six positions ([n, 6, d] each)."""
    got = {}
    handle = model.model.layers[layer].mlp.register_forward_hook(
        lambda m, i, o: got.update(mlp_in=i[0].detach(), mlp_out=o.detach()))
    out = {"mlp_in": [], "mlp_out": []}
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]["token_ids"]))
    rows = {}
    with torch.no_grad():
        for s in range(0, len(order), 32):
            chunk = order[s:s + 32]
            t = max(len(prompts[i]["token_ids"]) for i in chunk)
            ids = torch.full((len(chunk), t), prompts[chunk[0]]["token_ids"][0], dtype=torch.long)
            for b, i in enumerate(chunk):
                ids[b, :len(prompts[i]["token_ids"])] = torch.tensor(prompts[i]["token_ids"])
            model.model(input_ids=ids)
            for b, i in enumerate(chunk):
                n = len(prompts[i]["token_ids"])
                # A copy: a view would keep the whole batch's activations alive.
                rows[i] = {side: got[side][b, n - 6:n].clone() for side in out}
    handle.remove()
    return {side: torch.stack([rows[i][side] for i in range(len(prompts))]) for side in out}


def check_vocabulary_and_prompts(tok, ours):
    theirs = set(get_alpha_tokens(tok))
    mine = set(ours["words"])
    report(theirs == mine, f"vocabulary: SAEBench's get_alpha_tokens gives {len(theirs)} words, ours {len(mine)}, "
           f"{len(theirs ^ mine)} differ")
    prompts = ours["dataset"]["train"] + ours["dataset"]["test"]
    prompts += [p for probe in ours["probes"] for tp in probe["true_positives"] for p in tp]
    same_text = same_ids = 0
    for p in prompts:
        base = create_icl_prompt(p["word"], examples=p["examples"], base_template=TEMPLATE,
                                 answer_formatter=first_letter_formatter(), max_icl_examples=len(p["examples"]),
                                 shuffle_examples=False, prepend_separator_to_first_example=True).base
        same_text += base == p["text"]
        same_ids += [tok.bos_token_id] + tok(base, add_special_tokens=False)["input_ids"] == p["token_ids"]
    report(same_text == same_ids == len(prompts),
           f"prompts: SAEBench's create_icl_prompt text equal on {same_text}/{len(prompts)}, transformers' "
           f"BOS + token ids equal on {same_ids}/{len(prompts)}")


def probe_f1(weights, bias, x, letters):
    scores = x @ weights.T + bias
    out = []
    for i in range(26):
        y, pred = letters == i, (scores[:, i] > 0).numpy()
        tp = (y & pred).sum()
        out.append(2 * tp / max(1, 2 * tp + (y ^ pred).sum()))
    return np.array(out)


def check_letter_probe(side, mine, acts, data):
    """SAEBench's letter probe, two seeds, against ours (test F1 per letter)."""
    ytr = np.array([p["letter"] for p in data["train"]])
    yte = np.array([p["letter"] for p in data["test"]])
    xtr, xte = acts["train"][side][:, 0], acts["test"][side][:, 0]
    f1s = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        probe, _ = train_linear_probe_for_task(
            pd.DataFrame({"answer_class": ytr}), pd.DataFrame({"answer_class": yte}), torch.device("cpu"),
            np.ascontiguousarray(xtr.numpy()), np.ascontiguousarray(xte.numpy()), batch_size=64, num_epochs=50,
            lr=1e-2)
        f1s.append(probe_f1(probe.weights.detach(), probe.biases.detach(), xte, yte))
    ours = np.array(mine["f1"])
    spread = np.abs(f1s[0] - f1s[1])
    diff = np.abs(ours - f1s[0])
    counted = lambda f: set(np.flatnonzero(f > 0.6).tolist())
    line = (f"letter probes on {side}: mean F1 ours {ours.mean():.3f}, SAEBench {f1s[0].mean():.3f} / "
            f"{f1s[1].mean():.3f} (seeds 0/1); |ours − SAEBench| mean {diff.mean():.3f} max {diff.max():.3f}, "
            f"SAEBench's own seeds differ by mean {spread.mean():.3f} max {spread.max():.3f}; letters above 0.6: "
            f"ours {len(counted(ours))}, SAEBench {len(counted(f1s[0]))}/{len(counted(f1s[1]))}")
    # Ours is one more draw of the same training: within the range two of SAEBench's own draws span.
    report(diff.mean() <= 2 * spread.mean() + 0.01 and diff.max() <= 2 * spread.max() + 0.02, line)
    # The probe we used, as SAEBench's LinearProbe, for the checks that follow.
    lp = LinearProbe(len(mine["weights"][0]), 26)
    with torch.no_grad():
        lp.fc.weight.copy_(torch.tensor(mine["weights"]))
        lp.fc.bias.copy_(torch.tensor(mine["bias"]))
    return lp


def check_k_sparse(c, coder, acts, data):
    """Our latents' k-sparse probes fit by SAEBench's classifier; SAEBench's feature splitting on them."""
    side = c["side"]
    ytr = np.array([p["letter"] for p in data["train"]])
    yte = np.array([p["letter"] for p in data["test"]])
    ztr = coder.encode(acts["train"][side][:, 0]).numpy()
    zte = coder.encode(acts["test"][side][:, 0]).numpy()
    rows, diffs = [], []
    for i, letter in enumerate(c["letters"]):
        row = {"letter": LETTERS[i]}
        for k, feats in enumerate(letter["k_sparse_latents"], start=1):
            sk = LogisticRegression(max_iter=500, class_weight="balanced").fit(ztr[:, feats], (ytr == i).astype(int))
            pred = (zte[:, feats] @ sk.coef_[0] + sk.intercept_[0]) > 0
            y = yte == i
            tp = (y & pred).sum()
            f1 = 2 * tp / max(1, 2 * tp + (y ^ pred).sum())
            diffs.append(abs(f1 - letter["k_sparse_f1"][k - 1]))
            row[f"f1_sparse_sae_{k}"] = f1
            row[f"sparse_sae_k_{k}_feats"] = np.array(feats)
        rows.append(row)
    df = pd.DataFrame(rows)
    ksp.add_feature_splits_to_metrics_df(df, max_k_value=10, f1_jump_threshold=0.03)
    same_main = sum(list(df["split_feats"][i]) == c["letters"][i]["main_latents"] for i in range(26))
    diffs = np.array(diffs)
    # lbfgs (max_iter 500) against our exact solver on ≤ 10 features: a few test words on a decision boundary.
    report(np.mean(diffs) < 0.01 and same_main >= 24,
           f"{c['name']:<22} k-sparse F1 on our latents: SAEBench's classifier vs ours, mean |diff| "
           f"{diffs.mean():.4f}, max {diffs.max():.3f}; main latents (SAEBench's feature splitting) equal on "
           f"{same_main}/26 letters")
    return df


def check_saebench_l1(c, coder, acts, data):
    """SAEBench's own L1 probe + k-sparse probes: their mean F1 per k against ours (a different draw)."""
    side = c["side"]
    train = [(p["word"], p["letter"]) for p in data["train"]]
    torch.manual_seed(0)
    probes = ksp.train_k_sparse_probes(coder, train, acts["train"][side][:, 0].contiguous(), ks=list(range(1, 11)),
                                       precalc_sae_acts=True)
    yte = np.array([p["letter"] for p in data["test"]])
    zte = coder.encode(acts["test"][side][:, 0])
    counted = [i for i, l in enumerate(c["letters"]) if l["counted"]] or list(range(26))
    theirs, same = [], 0
    for k in range(1, 11):
        f1s = []
        for i in counted:
            p = probes[k][i]
            pred = (p(zte) > 0).numpy()
            y = yte == i
            tp = (y & pred).sum()
            f1s.append(2 * tp / max(1, 2 * tp + (y ^ pred).sum()))
            same += set(p.feature_ids.tolist()) == set(c["letters"][i]["k_sparse_latents"][k - 1])
        theirs.append(np.mean(f1s))
    ours = np.array(c["mean_k_sparse_f1"] or [np.mean([c["letters"][i]["k_sparse_f1"][k] for i in counted])
                                                for k in range(10)])
    d = np.abs(ours - np.array(theirs))
    report(d.max() < 0.1, f"{c['name']:<22} SAEBench's own L1 probe: mean k-sparse F1 k=1 {theirs[0]:.3f} "
           f"(ours {ours[0]:.3f}), k=10 {theirs[-1]:.3f} (ours {ours[-1]:.3f}), largest |diff| over k {d.max():.3f}; "
           f"same latents in {same}/{10 * len(counted)} (letter, k)")


class Shim:
    """What FeatureAbsorptionCalculator calls of a HookedTransformer, over precomputed activations."""

    def __init__(self, tok, acts_by_text, hook):
        self.tokenizer, self.acts, self.hook, self.refused = tok, acts_by_text, hook, 0

    def run_with_cache(self, texts, names_filter):
        return None, {self.hook: torch.stack([self.acts[t] for t in texts])}

    def to_tokens(self, text):
        return torch.tensor([[0] + self.tokenizer(text, add_special_tokens=False)["input_ids"]])


def check_absorption(c, coder, probe, tp_acts, model_shim, layer):
    side = c["side"]
    rows, fdiff, flips, refused = [], [], 0, 0
    shim = model_shim[side]
    calc = FeatureAbsorptionCalculator(
        model=shim, icl_word_list=[], max_icl_examples=10, base_template=TEMPLATE, word_token_pos=-6,
        full_absorption_probe_cos_sim_threshold=fa.FULL_ABSORPTION_PROBE_COS_THRESHOLD,
        absorption_fraction_probe_cos_sim_threshold=fa.ABSORPTION_FRACTION_PROBE_COS_THRESHOLD,
        probe_projection_proportion_threshold=fa.ABSORPTION_PROBE_PROJECTION_PROPORTION_THRESHOLD,
        absorption_fraction_max_absorbing_latents=fa.ABSORPTION_FRACTION_MAX_ABSORBING_LATENTS)
    for i, letter in enumerate(c["letters"]):
        prompts = tp_acts[side]["prompts"][i]
        if not prompts:
            continue
        given = [SpellingPrompt(base=p["text"], answer=" " + LETTERS[i].upper(), word=p["word"]) for p in prompts]
        calc._build_prompts = lambda words, given=given: given
        try:
            calc._validate_prompts_are_same_length(given)
        except ValueError:
            refused += 1
        calc._validate_prompts_are_same_length = lambda ps: None
        res = calc.calculate_absorption(coder, words=[p["word"] for p in prompts], probe_direction=probe.weights[i],
                                        main_feature_ids=letter["main_latents"], layer=layer, show_progress=False)
        for w, mine in zip(res.word_results, letter["words"]):
            fdiff.append(abs(w.absorption_fraction - mine["absorption_fraction"]))
            flips += w.is_full_absorption != mine["full_absorption"]
            rows.append({"letter": LETTERS[i], "absorption_fraction": w.absorption_fraction,
                         "is_full_absorption": w.is_full_absorption, "num_probe_true_positives": len(prompts),
                         "split_feats": letter["main_latents"]})
    agg = absorption_main._aggregate_results_df(pd.DataFrame(rows))
    by_letter = {r["letter"]: r for _, r in agg.iterrows()}
    # The letters that count, or (where none does, as for a side whose probes all stay below 0.6) every letter
    # with a true positive.
    counted = [l for l in c["letters"] if l["counted"]] or [l for l in c["letters"] if l["probe_true_positives"]]
    theirs_frac = np.mean([by_letter[l["letter"]]["mean_absorption_fraction"] for l in counted])
    theirs_full = np.mean([by_letter[l["letter"]]["full_absorption_rate"] for l in counted])
    ours_frac = np.mean([l["absorption_fraction"] for l in counted])
    ours_full = np.mean([l["full_absorption_rate"] for l in counted])
    fdiff = np.array(fdiff)
    n = len(fdiff)
    # transformers and our forward agree to ~1e-5 relative; a word whose projection sits on a threshold
    # (40 %, cos 0.1, a main latent at 0) may fall the other way: allow 1 % of the words.
    report(np.mean(fdiff > 1e-3) <= 0.01 and flips <= max(1, 0.01 * n) and abs(theirs_frac - ours_frac) < 0.01
           and abs(theirs_full - ours_full) < 0.01,
           f"{c['name']:<22} absorption per word ({n} words, {len(counted)} letters counted): fraction differs "
           f"(> 1e-3) on {(fdiff > 1e-3).sum()}, full absorption on {flips}; mean absorption fraction SAEBench "
           f"{theirs_frac:.4f} ours {ours_frac:.4f}, full-absorption rate SAEBench {theirs_full:.4f} ours "
           f"{ours_full:.4f}; letters SAEBench's calculator would refuse (unequal prompt lengths): {refused}")


def main():
    eval_dir, gguf, run_dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
    ours = json.load(open(os.path.join(eval_dir, "absorption.json")))
    layer, data = ours["layer"], ours["dataset"]
    print(f"SAEBench's absorption code on our words: layer {layer}, {data['used']} of {len(ours['words'])} words, "
          f"{len(ours['coders'])} coder(s)")
    folder, name = os.path.split(os.path.abspath(gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    check_vocabulary_and_prompts(tok, ours)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.model.layers = model.model.layers[: layer + 1]
    model.eval()
    acts = {split: word_activations(model, layer, data[split]) for split in ("train", "test")}
    probes, tp_acts, shims = {}, {}, {}
    hook = f"blocks.{layer}.hook_resid_post"
    for p in ours["probes"]:
        side = p["side"]
        probes[side] = check_letter_probe(side, p, acts, data)
        flat = [q for tp in p["true_positives"] for q in tp]
        a = word_activations(model, layer, flat)[side]
        tp_acts[side] = {"prompts": p["true_positives"]}
        shims[side] = Shim(tok, {q["text"]: a[j] for j, q in enumerate(flat)}, hook)

    def folder_of(name):
        found = [os.path.join(r, name) for r in run_dirs if os.path.isdir(os.path.join(r, name))]
        if not found:
            sys.exit(f"coder {name} is in none of {run_dirs}")
        return found[0]

    for c in ours["coders"]:
        coder = Coder(folder_of(c["name"]), c["direction"])
        check_k_sparse(c, coder, acts, data)
        check_saebench_l1(c, coder, acts, data)
        check_absorption(c, coder, probes[c["side"]], tp_acts, shims, layer)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
