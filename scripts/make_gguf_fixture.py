#!/usr/bin/env python3
"""Writes tests/fixtures/quant_types.gguf with the `gguf` package (llama.cpp's reference Python code).

For each supported type T there is a tensor `x.T` and an F32 tensor `ref.T` holding gguf.quants.dequantize of
it: the Rust reader must turn `x.T` into exactly `ref.T`. `x.T` is gguf.quants.quantize of random values where
the package can quantise T (4 × 64 values); for the K-quants, which it only dequantises, it is 4 rows of random
super-blocks (4 × 256 values) whose f16 scales are set to finite values, so every bit pattern of the packed
scales and quants is exercised. `x.q2_k` is of a type the reader does not support.
"""
import os

import numpy as np
from gguf import GGMLQuantizationType as Q, GGUFWriter
from gguf.quants import dequantize, quantize

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "quant_types.gguf")
rng = np.random.default_rng(0)
x = (rng.standard_normal((4, 64)) * 3).astype(np.float32)
w = GGUFWriter(out, "llama")
w.add_uint32("fixture.rows", 4)
for name, qt in [("f32", Q.F32), ("f16", Q.F16), ("bf16", Q.BF16), ("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0),
                 ("q4_1", Q.Q4_1), ("q5_0", Q.Q5_0), ("q5_1", Q.Q5_1)]:
    data = quantize(x, qt)
    w.add_tensor(f"x.{name}", data, raw_dtype=qt)
    w.add_tensor(f"ref.{name}", dequantize(data, qt).astype(np.float32).reshape(x.shape))


def f16_bytes(n):
    return (rng.uniform(-0.05, 0.05, n).astype(np.float16)).view(np.uint8).reshape(n, 2)


# name, type, bytes per super-block, byte offsets of its f16 fields
for name, qt, size, halves in [("q4_k", Q.Q4_K, 144, [0, 2]), ("q5_k", Q.Q5_K, 176, [0, 2]),
                               ("q6_k", Q.Q6_K, 210, [208]), ("q2_k", Q.Q2_K, 84, [80, 82])]:
    blocks = rng.integers(0, 256, (4, size), dtype=np.uint8)
    for at in halves:
        blocks[:, at:at + 2] = f16_bytes(4)
    w.add_tensor(f"x.{name}", blocks, raw_dtype=qt)
    w.add_tensor(f"ref.{name}", dequantize(blocks, qt).astype(np.float32).reshape(4, 256))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(out, os.path.getsize(out), "bytes")
