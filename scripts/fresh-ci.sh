#!/usr/bin/env bash
# What CI does on a new machine: clone the committed HEAD into a temporary directory, make an empty virtual
# environment there, and run .ci/run in it with CI=true and no standard input. Uncommitted changes are not
# included (commit first); packages installed by hand on this machine cannot hide a missing dependency.
#
#   scripts/fresh-ci.sh            prints pytest's summary line and the exit code of .ci/run
#   KEEP=1 scripts/fresh-ci.sh     keeps the temporary directory (its path is printed) to look into
set -u
root=$(git rev-parse --show-toplevel 2>/dev/null) || { echo "fresh-ci: run it inside the fastddpg checkout"; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/fastddpg-fresh-ci.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
head=$(git -C "$root" rev-parse --short HEAD)
git clone --quiet --no-local "$root" "$work/src" || { echo "fresh-ci: git clone failed"; exit 2; }
python3 -m venv "$work/venv" || { echo "fresh-ci: python3 -m venv failed"; exit 2; }
started=$(date +%s)
(
  cd "$work/src" || exit 2
  export PATH="$work/venv/bin:$PATH" VIRTUAL_ENV="$work/venv" CI=true
  unset PYTHONPATH
  bash .ci/run </dev/null
) >"$work/ci.log" 2>&1
rc=$?
echo "fresh clone of $head: .ci/run exited $rc after $(( $(date +%s) - started )) s"
grep -E "^(FAILED|ERROR) " "$work/ci.log" | head -20
grep -E "[0-9]+ (passed|failed|error)" "$work/ci.log" | tail -1
if [ "${KEEP:-0}" = 1 ]; then echo "log: $work/ci.log"; elif [ $rc -ne 0 ]; then tail -40 "$work/ci.log"; fi
exit $rc
