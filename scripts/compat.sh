#!/usr/bin/env bash
# Runs the default test suite against another torch: a fresh clone of the committed HEAD, an empty virtual
# environment, torch==VERSION installed first, then the project with CI's extras (pip keeps that torch, since it lies
# in the declared range), then pytest. Use it for the declared floor (pyproject's torch>=...) whenever the floor, the
# tensordict range or a torch-version-sensitive piece (compile, torch.func) changes.
# Usage (from the project root):  scripts/compat.sh VERSION [pytest args...]     e.g. scripts/compat.sh 2.11.0
# Uncommitted changes are NOT included: commit first. Prints torch's version as the tests saw it and pytest's summary.
set -uo pipefail
version=${1:?usage: scripts/compat.sh TORCH_VERSION [pytest args...]}
shift
top=$(git rev-parse --show-toplevel) || { echo "not inside a git checkout"; exit 2; }
dir=$(mktemp -d /tmp/compat.XXXXXX)
git clone -q "$top" "$dir/repo" || { echo "clone failed"; exit 2; }
python3 -m venv "$dir/venv" || { echo "python3 -m venv failed"; exit 2; }
py="$dir/venv/bin/python"
log="$dir/compat.log"
start=$(date +%s)
{
  "$py" -m pip install "torch==$version" &&
  "$py" -m pip install -e "$dir/repo[dev,export,video,tensorboard,mujoco,sweep]" &&
  "$py" -c "import torch, tensordict; print('torch', torch.__version__, 'tensordict', tensordict.__version__)" &&
  (cd "$dir/repo" && TORCHINDUCTOR_CACHE_DIR="$dir/inductor" CI=true "$py" -m pytest -q "$@" </dev/null)
} >"$log" 2>&1
rc=$?
echo "torch $version: exit $rc in $(( $(date +%s) - start )) s"
grep -E "^torch .* tensordict" "$log"
grep -E "^(FAILED|ERROR) " "$log" | head -20
grep -E "[0-9]+ (passed|failed)" "$log" | tail -1
echo "full log: $log"
exit $rc
