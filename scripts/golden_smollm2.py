#!/usr/bin/env python3
"""Golden reference for the extractor: Hugging Face transformers (PyTorch, CPU, f32) on the embedded GGUF.

Writes tests/fixtures/smollm2_golden.safetensors (token ids, MLP input/output of two layers) and
tests/fixtures/smollm2_golden.json (texts, token ids, loss). Run after scripts/fetch_default.sh:

    python3 scripts/golden_smollm2.py

Tokenization. transformers (5.x) turns this GGUF's tokenizer (pre-tokenizer `smollm`) into a plain GPT-2
byte-level tokenizer, which splits numbers into multi-digit chunks. SmolLM2's own tokenizer (its hub
tokenizer.json, and llama.cpp's `smollm` pre-tokenizer) first isolates every digit. We record both: `ids_gguf`
is transformers' GGUF tokenizer as is; `ids` is the same vocabulary and merges with SmolLM2's pre-tokenizer
(Digits(individual_digits=True) then ByteLevel(add_prefix_space=False, use_regex=True)). The activations
are computed on `ids`. On text without digits the two agree (checked below and recorded).
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(__file__), "..")
MODEL_DIR = os.path.join(ROOT, "models")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LAYERS = [3, 7]
TEXT = (
    "The for statement in Python differs a bit from what you may be used to in C or Pascal. "
    "Rather than always iterating over an arithmetic progression of numbers (like in Pascal), "
    "Python's for statement iterates over the items of any sequence, in the order that they "
    "appear in the sequence. For example, range(10) generates 10 values, 0 through 9, and "
    "3.11 is the version."
)
TEXT_NO_DIGITS = "Errors detected during execution are called exceptions and are not unconditionally fatal."


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
    ids_gguf = tok(TEXT)["input_ids"]
    nd_gguf = tok(TEXT_NO_DIGITS)["input_ids"]
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    ids = tok(TEXT)["input_ids"]
    nd = tok(TEXT_NO_DIGITS)["input_ids"]
    assert nd == nd_gguf, "without digits both tokenizations must agree"

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
    # Zero ablation of layer 3's MLP: its output replaced by zeros (eval's scale for the CE-loss increase).
    handle = model.model.layers[3].mlp.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    with torch.no_grad():
        zero_loss = model(input_ids, labels=input_ids).loss.item()
    handle.remove()
    tensors = {k: v.float().contiguous() for k, v in captured.items()}
    tensors["token_ids"] = input_ids[0].to(torch.int64)
    tensors["last_logits"] = out.logits[0, -1].float().contiguous()
    os.makedirs(os.path.join(ROOT, "tests/fixtures"), exist_ok=True)
    save_file(tensors, os.path.join(ROOT, "tests/fixtures/smollm2_golden.safetensors"))
    meta = {
        "made_by": "scripts/golden_smollm2.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "model": GGUF,
        "layers": LAYERS,
        "text": TEXT,
        "ids": ids,
        "ids_gguf": ids_gguf,
        "text_no_digits": TEXT_NO_DIGITS,
        "ids_no_digits": nd,
        "loss": out.loss.item(),
        "loss_zero_ablated_layer3_mlp": zero_loss,
    }
    with open(os.path.join(ROOT, "tests/fixtures/smollm2_golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{len(ids)} tokens ({len(ids_gguf)} with transformers' GGUF tokenizer), loss {out.loss.item():.6f}")


if __name__ == "__main__":
    sys.exit(main())
