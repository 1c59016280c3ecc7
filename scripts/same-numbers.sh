#!/usr/bin/env bash
# Before/after check of a change that must not move any number: records fixed-seed training runs (DDPG, TD3,
# DDPG+OU+LayerNorm; eager and compiled; DDPG and TD3 hand-derived at 256 wide) with BASE's code in a temporary
# worktree and with the working tree, on this machine, now, and compares them to the last bit. Exit 0: identical;
# 1: they differ (which runs and keys).
# Usage (from the project root):  scripts/same-numbers.sh BASE        e.g. scripts/same-numbers.sh main
# Bit-for-bit holds only on one machine in one sitting; never compare with numbers recorded elsewhere.
set -euo pipefail
base=${1:?usage: scripts/same-numbers.sh BASE (a commit, branch or tag)}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d /tmp/same-numbers.XXXXXX)
trap 'git -C "$root" worktree remove --force "$tmp/base" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$root" worktree add --quiet --detach "$tmp/base" "$base"
# one inductor cache for both sides, apart from the user's: the kernels depend on the instruction set it was made on
export TORCHINDUCTOR_CACHE_DIR="$tmp/inductor"
echo "recording $base ($(git -C "$root" rev-parse --short "$base")) ..."
(cd "$tmp" && PYTHONPATH="$tmp/base" python "$root/scripts/fixed_seed_runs.py" --out "$tmp/base.json")
echo "recording the working tree ..."
(cd "$tmp" && PYTHONPATH="$root" python "$root/scripts/fixed_seed_runs.py" --out "$tmp/head.json")
python "$root/scripts/fixed_seed_runs.py" --compare "$tmp/base.json" "$tmp/head.json"
