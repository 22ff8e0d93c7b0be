#!/usr/bin/env bash
# The main job on the embedded default, as far as the pipeline exists: fetch the model and text, build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch_default.sh
cargo build --release
echo "built target/release/sparsecoder; extract is the next stage (issue 4)"
