#!/usr/bin/env python3
"""Tiny random-weight Hugging Face models of the paper's three architectures, and their golden outputs.

For GPT-NeoX (Pythia), Llama 3 and Gemma 2 this builds a model from a small config with `transformers`, saves it
with `save_pretrained` into tests/fixtures/hf/<arch>/ together with a small tokenizer of the architecture's
kind (trained here with the `tokenizers` library on the Python docs, so nothing is downloaded), and records in
golden.safetensors / golden.json what `transformers` (PyTorch, CPU, f32) computes on a fixed text: token ids,
the MLP input and output of two layers (hooks on the `mlp` modules, as sparsify hooks them), all logits, and
the loss. Run after scripts/fetch_default.sh:

    python3 scripts/make_hf_fixtures.py

Every special code path is made to matter, and the script checks that it does (outputs change when the path
is switched off): Llama 3's `llama3` rope scaling; Gemma 2's sliding window (context longer than the window),
attention and final logit soft-capping (weights scaled up so the caps bite), `query_pre_attn_scalar` and a
head_dim that is not hidden_size / heads; GPT-NeoX's partial rotary and parallel residual.
Storage types differ on purpose: NeoX f32, Llama 3 f16 in two shards (an index file), Gemma 2 bf16.
"""
import glob
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, Gemma2Config, GPTNeoXConfig, LlamaConfig,
                          PreTrainedTokenizerFast)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests/fixtures/hf")
DOCS = os.path.join(ROOT, "data/python-3.11-docs/tutorial")
VOCAB = 512
LAYERS = [1, 2]
TEXT = (
    "Python is an easy to learn, powerful programming language. It has efficient high-level data "
    "structures and a simple but effective approach to object-oriented programming: café, naïve, 3.11!"
)
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def training_text():
    files = sorted(glob.glob(os.path.join(DOCS, "*.rst.txt")))
    assert files, f"{DOCS} is missing: run scripts/fetch_default.sh"
    return [open(f, encoding="utf-8").read() for f in files]


def byte_level_tokenizer(specials, split_regex=None):
    tok = Tokenizer(models.BPE())
    if split_regex is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(split_regex, behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_text(), trainer)
    return tok


def sentencepiece_like_tokenizer():
    """Gemma's kind: spaces become '▁', BPE with byte fallback (<0xNN> tokens), BOS added by the template."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - 256, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(training_text(), trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    spec["model"]["byte_fallback"] = True
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", tok.token_to_id("<bos>"))])
    return tok


def save_tokenizer(tok, folder, bos, eos):
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
           "model_max_length": 4096}
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def run_golden(model, tokenizer, layer_list):
    """Token ids, MLP input/output of two layers (forward hooks on the mlp modules), logits, loss."""
    ids = tokenizer(TEXT)["input_ids"]
    plain = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    captured = {}

    def hook(layer):
        def fn(module, inputs, output):
            captured[f"mlp_in_{layer}"] = inputs[0][0].detach().clone()
            captured[f"mlp_out_{layer}"] = output[0].detach().clone()
        return fn

    hooks = [layer_list[layer].mlp.register_forward_hook(hook(layer)) for layer in LAYERS]
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        out = model(input_ids, labels=input_ids)
    for h in hooks:
        h.remove()
    tensors = {k: v.float().contiguous() for k, v in captured.items()}
    tensors["token_ids"] = input_ids[0].to(torch.int64)
    tensors["logits"] = out.logits[0].float().contiguous()
    return ids, plain, tensors, out.loss.item()


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def scale_weights(model, factor):
    """Random init at initializer_range gives near-uniform attention, where rotary and caps hardly matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.mul_(factor)


def build(arch):
    folder = os.path.join(OUT, arch)
    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed({"gpt_neox": 1, "llama3": 2, "gemma2": 3}[arch])
    if arch == "gpt_neox":
        tok = byte_level_tokenizer(["<|endoftext|>"])
        save_tokenizer(tok, folder, "<|endoftext|>", "<|endoftext|>")
        cfg = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                            intermediate_size=256, rotary_pct=0.25, rotary_emb_base=10000,
                            use_parallel_residual=True, hidden_act="gelu", layer_norm_eps=1e-5,
                            tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                            max_position_embeddings=256)
        dtype, shard = torch.float32, None
    elif arch == "llama3":
        tok = byte_level_tokenizer(["<|begin_of_text|>", "<|end_of_text|>"], LLAMA3_SPLIT)
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
        save_tokenizer(tok, folder, "<|begin_of_text|>", "<|end_of_text|>")
        cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=16, intermediate_size=160, rms_norm_eps=1e-5,
                          rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1,
                          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                          max_position_embeddings=512)
        dtype, shard = torch.float16, "150KB"
    else:
        tok = sentencepiece_like_tokenizer()
        save_tokenizer(tok, folder, "<bos>", "<eos>")
        cfg = Gemma2Config(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=24, intermediate_size=192, rms_norm_eps=1e-6,
                           query_pre_attn_scalar=20, sliding_window=8, attn_logit_softcapping=3.0,
                           final_logit_softcapping=4.0, hidden_activation="gelu_pytorch_tanh",
                           tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=2,
                           max_position_embeddings=512)
        dtype, shard = torch.bfloat16, None
    assert tok.get_vocab_size() <= VOCAB, tok.get_vocab_size()

    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    scale_weights(model, 8.0)
    # Round the weights to the storage type first, so the golden run sees exactly what the files hold.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).float())
    model.to(dtype).save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    layer_list = model.gpt_neox.layers if arch == "gpt_neox" else model.model.layers
    ids, plain, tensors, loss = run_golden(model, tokenizer, layer_list)

    # Each special path must change the outputs, or the fixture would not test it.
    checks = {}
    base = tensors["logits"]
    if arch == "llama3":
        plain_cfg = LlamaConfig(**{**cfg.to_dict(), "rope_scaling": None, "rope_parameters": None,
                                   "rope_theta": 500000.0})
        other = AutoModelForCausalLM.from_config(plain_cfg, dtype=torch.float32)
        other.load_state_dict(model.state_dict())
        checks["without llama3 rope scaling"] = rel(logits_of(other.eval(), ids), base)
    if arch == "gemma2":
        assert len(ids) > 2 * cfg.sliding_window, len(ids)
        for what, change in [("without sliding window", {"sliding_window": 4096}),
                             ("without attention soft-capping", {"attn_logit_softcapping": None}),
                             ("without final soft-capping", {"final_logit_softcapping": None})]:
            other = AutoModelForCausalLM.from_config(Gemma2Config(**{**cfg.to_dict(), **change}),
                                                     dtype=torch.float32)
            other.load_state_dict(model.state_dict())
            checks[what] = rel(logits_of(other.eval(), ids), base)
    if arch == "gpt_neox":
        for what, change in [("without parallel residual", {"use_parallel_residual": False}),
                             ("with full rotary", {"rotary_pct": 1.0, "rope_parameters": None})]:
            other = AutoModelForCausalLM.from_config(GPTNeoXConfig(**{**cfg.to_dict(), **change}),
                                                     dtype=torch.float32)
            other.load_state_dict(model.state_dict())
            checks[what] = rel(logits_of(other.eval(), ids), base)
    for what, r in checks.items():
        assert r > 1e-2, f"{arch}: logits {what} differ by only {r:.2e}: the fixture would not test that path"

    save_file(tensors, os.path.join(folder, "golden.safetensors"))
    meta = {
        "made_by": "scripts/make_hf_fixtures.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "architecture": arch,
        "layers": LAYERS,
        "text": TEXT,
        "ids": ids,
        "ids_without_special_tokens": plain,
        "bos_added": ids != plain,
        "vocab_size": cfg.vocab_size,
        "loss": loss,
        "relative_logit_change": checks,
    }
    with open(os.path.join(folder, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{arch}: {len(ids)} tokens, loss {loss:.4f}, checks {checks}")


def main():
    for arch in sys.argv[1:] or ["gpt_neox", "llama3", "gemma2"]:
        build(arch)
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(OUT, "**/*"), recursive=True)
                if os.path.isfile(p))
    print(f"fixtures: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
