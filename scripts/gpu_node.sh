#!/usr/bin/env bash
# One prepared measurement for a machine with an NVIDIA GPU (at most ~8 minutes), run from the
# repository root:  bash scripts/gpu_node.sh   (OUT=dir to write elsewhere; default reports/gpu)
#
#   1. the device: FMA-chain FP32 peak and triad bandwidth (Numba CUDA);
#   2. HEP at 224x224, batch 64, FP32: the Numba CUDA step, every convolution's rate as a %
#      of that peak, and PyTorch's step with TF32 off, then on; the ratio ours/PyTorch;
#   3. ResNet-50 through PyTorch at batches 32-256 (TF32 off: FP32 as the model counts it).
#
# Needs: numpy, numba (CUDA target), pandas, torch with CUDA. Results are the usual CSV files
# (schema in perfmodel/results.py) plus summary.json and summary.md, all under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-reports/gpu}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
pm() { "$PY" -m perfmodel "$@"; }
{
  echo "# gpu_node.sh  $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv || true
} > "$OUT/environment.txt"

# 1-2. the Numba CUDA HEP step (peak and bandwidth measured in the same run)
timeout 240 pm node --device cuda --net hep --batch 64 --sweep 16,32,64 --repeats 5 \
  --no-progress --json -o "$OUT/hep-numba-cuda.csv" > "$OUT/hep-numba-cuda.txt"
# 2. PyTorch's HEP step, TF32 off then on
for tf in off on; do
  timeout 90 pm node --framework torch --device cuda --tf32 "$tf" --net hep --batch 64 \
    --sweep 64 --repeats 10 --no-progress --json -o "$OUT/hep-torch-tf32$tf.csv" \
    > "$OUT/hep-torch-tf32$tf.txt"
done
# 3. ResNet-50 through PyTorch, FP32
timeout 150 pm node --framework torch --device cuda --tf32 off --net resnet50 --batch 256 \
  --sweep 32,64,128,256 --repeats 5 --no-progress --json -o "$OUT/resnet50-torch.csv" \
  > "$OUT/resnet50-torch.txt"

"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def summary(name):
    text = (out / f"{name}.txt").read_text()
    return json.loads(text[text.index("{"):])
ours, off, on, rn = (summary(n) for n in ("hep-numba-cuda", "hep-torch-tf32off",
                                          "hep-torch-tf32on", "resnet50-torch"))
s = {"hep_numba_step_s": ours["step_time_s"], "hep_torch_fp32_step_s": off["step_time_s"],
     "hep_torch_tf32_step_s": on["step_time_s"],
     "hep_speed_ours_over_torch_fp32": off["step_time_s"] / ours["step_time_s"],
     "hep_speed_ours_over_torch_tf32": on["step_time_s"] / ours["step_time_s"],
     "fma_peak_flops": ours["peak_fma_flops"], "triad_Bps": ours["triad_bandwidth_Bps"],
     "conv_peak_fraction": ours["conv_peak_fraction"],
     "resnet50_torch_fp32": rn["rate_vs_batch"]}
(out / "summary.json").write_text(json.dumps(s, indent=2))
lines = ["| figure | value |", "|---|---|",
         f"| HEP 224, batch 64: Numba CUDA step | {s['hep_numba_step_s'] * 1e3:.1f} ms |",
         f"| ... PyTorch FP32 (TF32 off) | {s['hep_torch_fp32_step_s'] * 1e3:.1f} ms |",
         f"| ... PyTorch TF32 | {s['hep_torch_tf32_step_s'] * 1e3:.1f} ms |",
         f"| speed ours / PyTorch FP32 | {s['hep_speed_ours_over_torch_fp32']:.2f}x |",
         f"| FMA-chain FP32 peak | {s['fma_peak_flops'] / 1e12:.2f} TFLOP/s |",
         f"| triad bandwidth | {s['triad_Bps'] / 1e9:.0f} GB/s |"]
lines += [f"| {k} (train) % of peak | {100 * v:.1f}% |" for k, v in s["conv_peak_fraction"].items()]
lines += [f"| ResNet-50 PyTorch FP32 batch {r['batch']} | {r['samples_per_s']:.0f} img/s |"
          for r in s["resnet50_torch_fp32"]]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
echo "results under $OUT"
