#!/usr/bin/env python3
"""Golden reference for the gemma3 architecture: Hugging Face transformers (PyTorch, CPU, f32) on Gemma-3-270M's
GGUF (Q4_K_M: Q8_0, Q5_0, Q4_K, Q6_K and F32 tensors, dequantised by transformers through the gguf package).

Writes tests/fixtures/gemma3_golden.safetensors (token ids, MLP input/output of three layers at the last 96
positions, last-token logits) and tests/fixtures/gemma3_golden.json (text, token ids, loss, a greedy continuation, and the token ids
of a few more texts). The text is long enough (> 512 tokens) that the sliding-window layers see only part of it.
Run after scripts/fetch_models.sh gemma, in a Python with torch and transformers:

    python3 scripts/golden_gemma3.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(__file__), "..")
MODEL_DIR = os.path.join(ROOT, "models")
GGUF = "gemma-3-270m-q4_k_m.gguf"
# A local (sliding-window) layer, the first global one, and a late local one.
LAYERS = [3, 5, 16]
# The MLP tensors are kept for the last positions only (they are past the 512-token window; it keeps the
# fixture small).
LAST = 96
TUTORIAL = os.path.join(ROOT, "data/python-3.11-docs/tutorial/controlflow.rst.txt")
PROMPT = "The Python tutorial explains that a for loop"
NEW_TOKENS = 12
# Tokenizer cases: spaces, tabs, newlines, digits, code, non-ASCII, a byte-fallback character.
TEXTS = [
    "def f(x):\n\treturn  x ** 2  # square\n",
    "Größe: 3.14159 — naïve café, 東京 and emoji 🐍!",
    "   leading spaces and trailing   ",
    "<start_of_turn>user\nhello<end_of_turn>",
]


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
    text = open(TUTORIAL, encoding="utf-8").read()[:2600]
    ids = tok(text)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF, dtype=torch.float32)
    model.eval()
    captured = {}

    def hook(layer):
        def fn(module, inputs, output):
            captured[f"mlp_in_{layer}"] = inputs[0][0, -LAST:].detach().clone()
            captured[f"mlp_out_{layer}"] = output[0, -LAST:].detach().clone()
        return fn

    hooks = [model.model.layers[layer].mlp.register_forward_hook(hook(layer)) for layer in LAYERS]
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        out = model(input_ids, labels=input_ids)
    for h in hooks:
        h.remove()
    prompt_ids = tok(PROMPT)["input_ids"]
    with torch.no_grad():
        generated = model.generate(torch.tensor([prompt_ids]), max_new_tokens=NEW_TOKENS, do_sample=False)
    new_ids = generated[0, len(prompt_ids):].tolist()
    tensors = {k: v.float().contiguous() for k, v in captured.items()}
    tensors["token_ids"] = input_ids[0].to(torch.int64)
    tensors["last_logits"] = out.logits[0, -1].float().contiguous()
    save_file(tensors, os.path.join(ROOT, "tests/fixtures/gemma3_golden.safetensors"))
    meta = {
        "made_by": "scripts/golden_gemma3.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "model": GGUF,
        "layers": LAYERS,
        "last_positions": LAST,
        "text": text,
        "ids": ids,
        "loss": out.loss.item(),
        "prompt": PROMPT,
        "prompt_ids": prompt_ids,
        "greedy_ids": new_ids,
        "greedy_text": tok.decode(new_ids),
        "texts": TEXTS,
        "texts_ids": [tok(t)["input_ids"] for t in TEXTS],
        "texts_decoded": [tok.decode(tok(t)["input_ids"]) for t in TEXTS],
    }
    with open(os.path.join(ROOT, "tests/fixtures/gemma3_golden.json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
    print(f"{len(ids)} tokens, loss {out.loss.item():.6f}; greedy: {tok.decode(new_ids)!r}")


if __name__ == "__main__":
    sys.exit(main())
