#!/usr/bin/env bash
# Mutation testing of the logic that is easy to mis-wire (losses, pool, schedule, the training
# step): mutmut changes one thing at a time (an operator, a constant, an argument) and runs the
# fast tests that reach it; a mutant that no test notices ("survived") is a hole in the tests.
# A developer command, not part of CI: about 3 minutes on 2 CPU cores. Configured in
# pyproject.toml ([tool.mutmut]); results stay in mutants/ and a second run resumes.
#   bash scripts/mutation.sh            # run, then print the survivors
#   .venv/bin/mutmut show NAME          # the diff of one mutant
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/pip install -q "mutmut==3.8.1" 2>&1 | grep -v -e "is ignored: it is neither" || true
# One thread per test process: mutmut forks its workers from a process that has run torch, and a
# forked OpenMP pool can hang (measured: mutants that fail at once timed out instead).
OMP_NUM_THREADS=1 .venv/bin/mutmut run --max-children "$(nproc)" "$@" > mutants.log 2>&1 || true
.venv/bin/python - <<'PY'
import subprocess

lines = subprocess.run([".venv/bin/mutmut", "results", "--all", "true"], capture_output=True,
                       text=True, check=True).stdout.splitlines()
status = [line.rsplit(": ", 1)[1] for line in lines if ": " in line]
killed = sum(s in ("killed", "timeout") for s in status)
tested = sum(s not in ("not checked", "skipped") for s in status)
print(f"mutation score: {killed}/{tested} killed ({100 * killed / max(tested, 1):.1f}%), "
      f"{len(status)} mutants")
for line in lines:
    if line.endswith(": survived"):
        print(line.strip())
PY
