#!/usr/bin/env python3
"""Writes tests/fixtures/quant_types.gguf with the `gguf` package (llama.cpp's reference Python code).

For each supported type T there is a tensor `x.T` quantised by gguf.quants.quantize, and an F32 tensor `ref.T`
holding gguf.quants.dequantize of it: the Rust reader must turn `x.T` into exactly `ref.T`. `x.q5_0` is of a type
the reader does not support.
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
for name, qt in [("f32", Q.F32), ("f16", Q.F16), ("bf16", Q.BF16), ("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1), ("q5_0", Q.Q5_0)]:
    data = quantize(x, qt)
    w.add_tensor(f"x.{name}", data, raw_dtype=qt)
    w.add_tensor(f"ref.{name}", dequantize(data, qt).astype(np.float32).reshape(x.shape))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(out, os.path.getsize(out), "bytes")
