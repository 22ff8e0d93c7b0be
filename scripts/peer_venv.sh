# Sourced by the scripts that check us against the peers' own code (check_exports.sh, check_probing.sh): sets
# $venv to their venv ($PEER_VENV, default ~/.cache/sparsecoder/venv-peers; torch, about 6.5 GB, outside the
# clone), made once, and adds a package a newer script needs to an older venv.
venv="${PEER_VENV:-$HOME/.cache/sparsecoder/venv-peers}"
if [ ! -x "$venv/bin/python" ]; then
  # circuit-tracer needs transformers<=4.57.3; these versions resolve together (../shared/reference/peer-formats.md).
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "circuit-tracer==0.5.0" "sae-lens==6.54.12" "nnsight==0.7.0" "beartype==0.17.2"
  # delphi hard-requires vllm (a GPU stack); its latent loader needs only these.
  "$venv/bin/pip" install --quiet --no-deps "eai-delphi==0.1.3"
  "$venv/bin/pip" install --quiet orjson blobfile asyncer aiofiles tiktoken faiss-cpu fire "sentence-transformers==5.7.0"
fi
# SAEBench pins an older sae-lens; its probing and pooling modules import with the one above (beartype 0.17.2:
# 0.18+ breaks its jaxtyping hints).
"$venv/bin/python" -c "import sae_bench" 2>/dev/null || "$venv/bin/pip" install --quiet --no-deps "sae-bench==0.6.0"
# transformers reads the GGUF through the gguf package (check_probing.py, check_absorption.py).
"$venv/bin/python" -c "import gguf" 2>/dev/null || "$venv/bin/pip" install --quiet "gguf==0.19.0"
# SAEBench's absorption main module imports tabulate (check_absorption.py calls its aggregation).
"$venv/bin/python" -c "import tabulate" 2>/dev/null || "$venv/bin/pip" install --quiet "tabulate==0.9.0"
