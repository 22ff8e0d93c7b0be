#!/usr/bin/env python3
"""Golden reference for local generation (the offline model of `sparsecoder interp`): Hugging Face transformers
(PyTorch, CPU, f32) on the embedded GGUF, greedy decoding of chat prompts rendered with the GGUF's own chat
template (`apply_chat_template`).

Writes tests/fixtures/generate_smollm2.json: per prompt, the messages, the rendered prompt text, its token ids,
the greedy continuation's ids (48 new tokens, stopping at `<|im_end|>`), the logits of the first new token (ids below 4096 and the top 64),
and, per generated step, the gap between the best and second-best logit (how close a step was to a tie).
Prompts have no digits (transformers' GGUF tokenizer does not isolate digits as SmolLM2's own does; see
scripts/golden_smollm2.py). Run after scripts/fetch_default.sh:

    python3 scripts/golden_generate.py
"""
import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL_DIR = os.path.join(ROOT, "models")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
NEW_TOKENS = 48
CONVERSATIONS = [
    [{"role": "user", "content": "What does the Python keyword yield do? Answer in one sentence."}],
    [
        {"role": "system", "content": "You are a careful assistant who explains neural network features."},
        {"role": "user", "content": "Tokens marked <<like this>> activate a feature:\n"
                                    "the <<for>> loop iterates over a list\n"
                                    "use a <<for>> statement with range\n"
                                    "Explain in one sentence what the feature detects."},
    ],
]


def main():
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF, dtype=torch.float32)
    model.eval()
    end = tok.convert_tokens_to_ids("<|im_end|>")
    out = []
    for messages in CONVERSATIONS:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        seq = torch.tensor([ids])
        generated, gaps, first_logits = [], [], None
        with torch.no_grad():
            past = None
            step_input = seq
            for _ in range(NEW_TOKENS):
                o = model(step_input, past_key_values=past, use_cache=True)
                past = o.past_key_values
                logits = o.logits[0, -1]
                if first_logits is None:
                    top = torch.topk(logits, 64)
                    first_logits = {"head": logits[:4096].tolist(),
                                    "top_ids": top.indices.tolist(), "top_values": top.values.tolist()}
                top2 = torch.topk(logits, 2).values
                nxt = int(torch.argmax(logits))
                gaps.append(float(top2[0] - top2[1]))
                if nxt == end or nxt == tok.eos_token_id:
                    break
                generated.append(nxt)
                step_input = torch.tensor([[nxt]])
        answer = tok.decode(generated)
        print(f"{len(ids)} prompt tokens -> {answer!r} (smallest top-2 gap {min(gaps):.4f})")
        out.append({"messages": messages, "prompt": text, "prompt_ids": ids, "generated_ids": generated,
                    "answer": answer, "first_logits": first_logits, "top2_gaps": gaps})
    path = os.path.join(ROOT, "tests/fixtures/generate_smollm2.json")
    with open(path, "w") as f:
        json.dump({"gguf": GGUF, "new_tokens": NEW_TOKENS, "conversations": out}, f)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
