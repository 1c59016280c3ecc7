#!/usr/bin/env bash
# Download the wheels that the project's GPU machine lacks into .whl/ (run it here, in the repository root).
# That machine has torch, pandas, pyarrow, rich, numpy, cloudpickle, packaging, typing-extensions, narwhals and
# pytest, but not gymnasium, tensordict or plotly; these are they and their missing requirements (checked with
# `unzip -p .whl/NAME-*.whl '*/METADATA' | grep ^Requires-Dist`). All are pure-Python wheels. Keep one version of
# each: two stop the whole install. Usage there: CONTRIBUTING.md, "On a GPU machine".
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' "$(git rev-parse --git-common-dir)/info/exclude" || echo '/.whl/' >> "$(git rev-parse --git-common-dir)/info/exclude"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl gymnasium==1.4.0 farama-notifications==0.0.6 tensordict==0.15.3 pyvers==0.2.3 plotly==7.1.0
ls -la .whl
