#!/usr/bin/env python3
"""Golden reference for the qwen2 architecture: Hugging Face transformers (PyTorch, CPU, f32) on
Qwen2.5-Coder-1.5B-Instruct's GGUF (Q4_K_M, dequantised by transformers through the gguf package).

Writes tests/fixtures/qwen2_golden.safetensors (token ids, MLP input/output of two layers, last-token logits)
and tests/fixtures/qwen2_golden.json (text, token ids, loss, and a greedy continuation of a ChatML prompt).
Run after scripts/fetch_models.sh qwen, in a Python with torch and transformers:

    python3 scripts/golden_qwen2.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(__file__), "..")
MODEL_DIR = os.path.join(ROOT, "models")
GGUF = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
LAYERS = [3, 14]
TEXT = (
    "The for statement in Python differs a bit from what you may be used to in C or Pascal. "
    "Rather than always iterating over an arithmetic progression of numbers (like in Pascal), "
    "Python's for statement iterates over the items of any sequence, in the order that they "
    "appear in the sequence. For example, range(10) generates 10 values, 0 through 9, and "
    "3.11 is the version."
)
CHAT = [{"role": "user", "content": "Write a Python function that returns the square of x."}]
NEW_TOKENS = 12


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
    ids = tok(TEXT)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF, dtype=torch.float32)
    model.eval()
    captured = {}

    def hook(layer):
        def fn(module, inputs, output):
            captured[f"mlp_in_{layer}"] = inputs[0][0].detach().clone()
            captured[f"mlp_out_{layer}"] = output[0].detach().clone()
        return fn

    hooks = [model.model.layers[layer].mlp.register_forward_hook(hook(layer)) for layer in LAYERS]
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        out = model(input_ids, labels=input_ids)
    for h in hooks:
        h.remove()
    chat_text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    chat_ids = tok(chat_text)["input_ids"]
    with torch.no_grad():
        generated = model.generate(torch.tensor([chat_ids]), max_new_tokens=NEW_TOKENS, do_sample=False)
    new_ids = generated[0, len(chat_ids):].tolist()
    tensors = {k: v.float().contiguous() for k, v in captured.items()}
    tensors["token_ids"] = input_ids[0].to(torch.int64)
    tensors["last_logits"] = out.logits[0, -1].float().contiguous()
    save_file(tensors, os.path.join(ROOT, "tests/fixtures/qwen2_golden.safetensors"))
    meta = {
        "made_by": "scripts/golden_qwen2.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "model": GGUF,
        "layers": LAYERS,
        "text": TEXT,
        "ids": ids,
        "loss": out.loss.item(),
        "chat_text": chat_text,
        "chat_ids": chat_ids,
        "greedy_ids": new_ids,
        "greedy_text": tok.decode(new_ids),
    }
    with open(os.path.join(ROOT, "tests/fixtures/qwen2_golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{len(ids)} tokens, loss {out.loss.item():.6f}; greedy: {tok.decode(new_ids)!r}")


if __name__ == "__main__":
    sys.exit(main())
