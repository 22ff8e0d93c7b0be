#!/usr/bin/env python3
"""Read one section of a sparsecoder shard with numpy alone and save it as .npy.

Usage: read_shard.py SHARD SECTION OUT.npy

SECTION is one of mlp_in, mlp_out, token_ids, seq_ids, positions. Activations are written as float32
[rows, width]; the id sections as int64 [rows]. Implemented from docs/cache-format.md only (no project code).
Archived shards (.zst) must be decompressed first (`zstd -d` or `sparsecoder decompress`).
"""
import struct
import sys

import numpy as np

MAGIC = b"SCSHARD\0"
FIXED_LEN, ENTRY_LEN, SECTION_COUNT = 40, 48, 5
HEADER_LEN = FIXED_LEN + SECTION_COUNT * ENTRY_LEN + 8
# element type code -> (numpy dtype of the stored bytes, bytes per element)
ELEM = {0: ("<f4", 4), 1: ("<f2", 2), 2: ("<u2", 2), 3: ("<u4", 4), 4: ("<u8", 8), 5: ("u1", 1)}
BF16, FP8 = 2, 5


def row_bytes(code, width):
    """Bytes of one row: fp8 rows carry a leading float32 scale."""
    return 4 + width if code == FP8 else width * ELEM[code][1]


def fp8_rows(raw, rows, width):
    """fp8 rows (float32 scale, then one E4M3 byte per element) as float32 [rows, width]."""
    raw = raw.reshape(rows, 4 + width)
    scale = raw[:, :4].copy().view("<f4")  # [rows, 1]
    codes = raw[:, 4:].astype(np.int32)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> 3) & 0x0F
    mantissa = (codes & 0x07).astype(np.float64)
    value = np.where(exponent == 0, mantissa / 8 * 2.0 ** -6, (1 + mantissa / 8) * 2.0 ** (exponent - 7))
    value = np.where((codes & 0x7F) == 0x7F, np.nan, sign * value).astype(np.float32)
    return value * scale


def fail(msg):
    sys.exit(f"read_shard.py: {msg}")


def main():
    if len(sys.argv) != 4:
        fail("usage: read_shard.py SHARD SECTION OUT.npy")
    path, want, out = sys.argv[1:]
    data = np.memmap(path, dtype=np.uint8, mode="r")
    if len(data) < HEADER_LEN:
        fail(f"{path}: truncated: {len(data)} bytes, header needs {HEADER_LEN}")
    head = bytes(data[:HEADER_LEN])
    if head[:8] != MAGIC:
        fail(f"{path}: magic expected {MAGIC!r}, found {head[:8]!r}")
    version, header_len, rows, d_in, d_out, act_code, count = struct.unpack_from("<IIQIIII", head, 8)
    if version != 1 or header_len != HEADER_LEN or count != SECTION_COUNT:
        fail(f"{path}: version/header length/section count expected 1/{HEADER_LEN}/5, "
             f"found {version}/{header_len}/{count}")
    widths = {"mlp_in": d_in, "mlp_out": d_out}
    for i in range(SECTION_COUNT):
        at = FIXED_LEN + i * ENTRY_LEN
        name = head[at:at + 16].rstrip(b"\0").decode("ascii")
        code, _reserved, offset, length, _checksum = struct.unpack_from("<IIQQQ", head, at + 16)
        if name != want:
            continue
        stored, size = ELEM[code]
        width = widths.get(name, 1)
        if length != rows * row_bytes(code, width) or offset + length > len(data):
            fail(f"{path}: section {name}: length {length} at offset {offset} does not fit "
                 f"{rows} rows x {row_bytes(code, width)} bytes in a {len(data)}-byte file")
        raw = np.frombuffer(data[offset:offset + length], dtype=stored)
        if name in widths:
            if code == FP8:
                arr = fp8_rows(raw, rows, width)
            elif code == BF16:  # bfloat16 is the upper half of a float32
                arr = (raw.astype(np.uint32) << 16).view(np.float32)
            else:
                arr = raw.astype(np.float32)
            arr = arr.reshape(rows, width)  # a no-op for fp8's rows
        else:
            arr = raw.astype(np.int64)
        np.save(out, arr)
        return
    fail(f"{path}: no section named {want!r}")


if __name__ == "__main__":
    main()
