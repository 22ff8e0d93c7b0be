#!/usr/bin/env python3
"""An attribution graph with circuit-tracer, offline, from our transcoder set (`sparsecoder export --format
circuit-tracer`) on SmolLM2: the model from our GGUF through transformers (written once as a local Hugging Face
folder), circuit-tracer's nnsight replacement model, `attribute` on one prompt, the graph files its frontend
reads. Run by scripts/attribution_e2e.sh in the peer venv (circuit-tracer 0.5.0, nnsight 0.7.0, gguf).

  attribution_e2e.py GGUF SET OUT_DIR [--prompt TEXT]

Checks, printed: (1) our set loaded by circuit-tracer computes our coders on the held-out rows the export
carries; (2) on the prompt, each layer's transcoder in the replacement model gives what our checkpoint gives
(sparsify's files, in numpy) on the MLP inputs the model feeds it; (3) the replacement model's logits with the
error nodes equal the model's own.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file


def hf_folder(gguf, out):
    """The GGUF as a Hugging Face folder (transformers dequantises it), written once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.path.exists(os.path.join(out, "config.json")):
        return out
    folder, name = os.path.split(os.path.abspath(gguf))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("set")
    ap.add_argument("out")
    ap.add_argument("--prompt", default="The capital of the state containing Dallas is")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    hf = hf_folder(a.gguf, os.path.join(a.out, "hf-model"))
    print(f"model folder: {hf} ({time.time() - t0:.0f} s)")

    from circuit_tracer import ReplacementModel, attribute
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.utils.create_graph_files import create_graph_files
    from circuit_tracer.utils.hf_utils import load_transcoder_from_hub
    import yaml

    config = yaml.safe_load(open(os.path.join(a.set, "config.yaml")))
    k = int(config["k"])
    cpu = torch.device("cpu")
    transcoders, _ = load_transcoder_from_hub(os.path.abspath(a.set), device=cpu, lazy_encoder=False,
                                              lazy_decoder=False)
    top_k = TopK(k)
    for t in transcoders.transcoders:  # our TopK after ReLU (docs/interop.md): the loader made them ReLU
        t.activation_function = lambda pre: F.relu(top_k(pre))
    n = len(transcoders.transcoders)
    print(f"transcoder set: {n} layers, k = {k} ({time.time() - t0:.0f} s)")

    # (1) the export's held-out rows, through circuit-tracer's transcoders
    sample = load_file(os.path.join(a.set, "sparsecoder_sample.safetensors"))
    worst = 0.0
    torch.set_grad_enabled(False)  # for the checks; attribute needs gradients
    for i, t in enumerate(transcoders.transcoders):
        x = torch.from_numpy(sample[f"layer_{i}.x"])
        out = t.decode(t.encode(x), x).numpy()
        ours = sample[f"layer_{i}.out"]
        worst = max(worst, float(np.abs(out - ours).max() / np.abs(ours).max()))
    print(f"(1) held-out rows, {n} layers: max rel err of the transcoders' outputs vs ours {worst:.2e}")
    ok = worst < 1e-5

    model = ReplacementModel.from_pretrained_and_transcoders(hf, transcoders, backend="nnsight", device=cpu,
                                                             dtype=torch.float32)
    print(f"replacement model ready ({time.time() - t0:.0f} s)")

    # (2) on the prompt: the MLP inputs the model feeds each transcoder, and our checkpoint on them
    tokens = model.tokenizer(a.prompt, return_tensors="pt").input_ids[0]
    mlp_in, _ = capture_mlp(hf, tokens, n)
    worst = 0.0
    for i, t in enumerate(transcoders.transcoders):
        x = mlp_in[i]
        theirs = t.decode(t.encode(torch.from_numpy(x)), torch.from_numpy(x)).numpy()
        worst = max(worst, float(np.abs(theirs - ours_on(a.set, i, x, k)).max() / max(np.abs(theirs).max(), 1e-9)))
    print(f"(2) prompt of {len(tokens)} tokens: max rel err, circuit-tracer's transcoders vs our checkpoint "
          f"files (numpy) on the model's MLP inputs {worst:.2e}")
    ok &= worst < 1e-5
    torch.set_grad_enabled(True)

    t1 = time.time()
    graph = attribute(a.prompt, model, max_n_logits=5, desired_logit_prob=0.9, batch_size=64,
                      max_feature_nodes=2048, verbose=False)
    print(f"attribute: {time.time() - t1:.0f} s; {graph.active_features.shape[0]} active features, "
          f"{len(graph.logit_token_ids)} logit nodes, adjacency {tuple(graph.adjacency_matrix.shape)}")

    # (3) replacement logits with error nodes = the model's
    from transformers import AutoModelForCausalLM
    torch.set_grad_enabled(False)
    hf_model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
    clean = hf_model(tokens[None]).logits[0, -1]
    probs = torch.softmax(clean, -1)
    top = torch.topk(probs, 5)
    names = [model.tokenizer.decode([int(i)]) for i in top.indices]
    graph_tokens = [int(t) for t in graph.logit_token_ids]
    # The graph's logit nodes carry the probabilities the replacement model (transcoders plus error nodes,
    # which make it exact) gave them: they must be the model's own.
    theirs = graph.logit_probabilities.float().numpy()
    want = probs[graph_tokens].numpy()
    err = float(np.abs(theirs - want).max() / want.max())
    print(f"(3) the model's top next tokens {list(zip(names, [round(float(p), 3) for p in top.values]))}; "
          f"the graph's logit nodes {[model.tokenizer.decode([t]) for t in graph_tokens]}, their probabilities "
          f"vs the model's: max rel err {err:.2e}")
    ok &= int(top.indices[0]) in graph_tokens and err < 1e-4

    path = os.path.join(a.out, "graph.pt")
    graph.to_pt(path)
    graphs = os.path.join(a.out, "graph_files")
    create_graph_files(graph_or_path=path, slug="sparsecoder-smollm2", output_path=graphs, node_threshold=0.8,
                       edge_threshold=0.98)
    print(f"graph files: {sorted(os.listdir(graphs))}")
    print("all checks ok" if ok else "CHECK FAILED")
    sys.exit(0 if ok else 1)


def capture_mlp(hf, tokens, n):
    """Each layer's MLP input and output on `tokens`, from the Hugging Face model with forward hooks."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
    ins, outs = {}, {}

    def keep(layer):
        def hook(module, inputs, output):  # returns None: the output is left as it is
            ins[layer] = inputs[0][0].numpy().copy()
            outs[layer] = output[0].numpy().copy()
        return hook

    hooks = [layer.mlp.register_forward_hook(keep(l)) for l, layer in enumerate(model.model.layers[:n])]
    model(tokens[None])
    for h in hooks:
        h.remove()
    return ins, outs


def ours_on(set_dir, layer, x, k):
    """Our skip transcoder, from the layer's checkpoint folder named in the export's provenance (sparsify's
    sae.safetensors), in numpy: TopK(ReLU(x·Wᵀ + b)) · W_dec + b_dec + x·W_skipᵀ."""
    import yaml

    prov = yaml.safe_load(open(os.path.join(set_dir, "config.yaml")))["sparsecoder"]["layers"][layer]
    w = load_file(os.path.join(prov["checkpoint"], "sae.safetensors"))
    pre = np.maximum(x @ w["encoder.weight"].T + w["encoder.bias"], 0)
    top = np.argpartition(-pre, k - 1, axis=-1)[:, :k]
    acts = np.zeros_like(pre)
    np.put_along_axis(acts, top, np.take_along_axis(pre, top, axis=-1), axis=-1)
    out = acts @ w["W_dec"] + w["b_dec"]
    return out + x @ w["W_skip"].T if "W_skip" in w else out


if __name__ == "__main__":
    main()
