#!/usr/bin/env bash
# The paper's setup (256 px crops of 286 px resizes, batch 1, the default recipe) on one GPU for
# a given wall-clock budget, then evaluate and export: everything needed to compare with the CPU
# model in models/.
#
#   bash scripts/paper_run.sh OUT [BUDGET_MINUTES] [extra aggan train flags...]
#
# The run's length is fitted to the budget: a short probe measures seconds per step on this
# machine, and the run gets as many steps as 90% of the budget allows (every schedule point
# keeps its fraction of the run). It needs a GPU unless the flags say otherwise (the test runs it
# on the CPU with a tiny model and budget). Environment: DATA (default
# ../shared/data/horse2zebra), DEVICE (default cuda), PRECISION (default bf16), PYTHON_BIN
# (default .venv/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash scripts/paper_run.sh OUT [BUDGET_MINUTES] [aggan train flags...]}
budget_min=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
data=${DATA:-../shared/data/horse2zebra}
device=${DEVICE:-cuda}
precision=${PRECISION:-bf16}
bin=${PYTHON_BIN:-.venv/bin}
if [ -e "$out/run/checkpoints/latest.pt" ]; then
  echo "paper_run: $out already holds a run; resume it with $bin/aggan train --out $out/run --resume" >&2
  exit 2
fi
mkdir -p "$out"
common=(--data "$data" --size 256 --device "$device" --precision "$precision" --no-progress "$@")

# 1. Probe: seconds per step at this size on this device (warm-up steps, then attention ones).
rm -rf "$out/probe"
"$bin/aggan" train "${common[@]}" --out "$out/probe" --steps 40 \
  --set monitor.log_every_steps=10 --set monitor.checkpoint_every_steps=1000 \
  --set monitor.sample_every_steps=1000 > "$out/probe.log" 2>&1
steps=$("$bin/python" - "$out/probe/stats.jsonl" "$budget_min" <<'EOF'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
seconds = sorted(r["time/sec_per_step"] for r in records[1:]) or [records[-1]["time/sec_per_step"]]
per_step = seconds[len(seconds) // 2] * 1.15  # the attention steps cost more than the warm-up's
print(max(40, int(float(sys.argv[2]) * 60 * 0.9 / per_step)))
EOF
)
rm -rf "$out/probe"
echo "paper_run: $steps steps in about $budget_min minutes on $device ($precision)"

# 2. Train, 3. evaluate (FID, KID both directions), 4. export the shareable model folder.
started=$(date +%s)
"$bin/aggan" train "${common[@]}" --out "$out/run" --steps "$steps" \
  --set monitor.checkpoint_every_steps=$(( steps / 10 > 0 ? steps / 10 : 1 ))
trained=$(( $(date +%s) - started ))
"$bin/aggan" evaluate --checkpoint "$out/run" --data "$data" --out "$out/report" --device "$device"
"$bin/aggan" export-weights --checkpoint "$out/run" --out "$out/model"
"$bin/python" - "$out" "$steps" "$trained" "$device" <<'EOF'
import json, platform, sys
import torch
out, steps, seconds, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
report = json.load(open(f"{out}/report/metrics.json"))
name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor()
summary = {"steps": steps, "train_seconds": seconds, "device": name or device,
           "metrics": {d: {k: m[k] for k in ("kid_x100_mean", "kid_x100_std", "fid") if k in m}
                       for d, m in report["directions"].items()}}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary))
EOF
echo "paper_run: $out/summary.json, report $out/report/index.html, model $out/model"
