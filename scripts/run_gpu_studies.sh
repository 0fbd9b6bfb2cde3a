#!/usr/bin/env bash
# The GPU part of the probe studies, on one machine with a CUDA device: a smoke run of the study's quick profile
# on the GPU, the U-Net plateau study at 2048 genes (sweeps/probes/unet_plateau_2048_synthetic.yaml: one worker,
# the arms one after another, each arm's 5 seeds at once), its run table and the study packed (database and run
# directories, without weights), then the gpu-marked tests. Every step writes into OUT_DIR as it goes.
#
#   bash scripts/run_gpu_studies.sh OUT_DIR [STUDY_SECONDS]
#
# STUDY_SECONDS stops the study after that long (SIGTERM: the arm in progress is requeued, its runs marked
# interrupted); rerunning the same command continues with the arms left. To continue on another machine (a GPU
# lease that starts bare), unpack OUT_DIR/study.tar.gz in the checkout's root there first: the arms it finished
# stay finished, and the interrupted one trains again. PYTHON picks the interpreter (default python).
# For the analysis, copy OUT_DIR/unet_plateau_2048_synthetic.csv to results/probes_v2/ and unpack
# OUT_DIR/study.tar.gz in the checkout's root (analysis/gene_scale.py --collect-curves reads the run directories).
set -uo pipefail
OUT=${1:?usage: run_gpu_studies.sh OUT_DIR [STUDY_SECONDS]}
LIMIT=${2:-0}
PY=${PYTHON:-python}
SWEEP=sweeps/probes/unet_plateau_2048_synthetic.yaml
STUDY=runs/probes_v2/probe_unet_plateau_2048_synthetic_v1
mkdir -p "$OUT"

$PY - >"$OUT/env.txt" 2>&1 <<'PY' || { cat "$OUT/env.txt"; exit 2; }
import platform, torch
from arch_lab.provenance import git_sha, package_versions
assert torch.cuda.is_available(), "no CUDA device: this script is for a GPU machine"
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("gpu", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
print("cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
print("git_sha", git_sha()); print(package_versions())
PY
cat "$OUT/env.txt"

echo "== smoke: the quick profile on the GPU"
$PY -m arch_lab.cli sweep run "$SWEEP" --profile quick --workers 1 >"$OUT/quick.log" 2>&1 || { tail -40 "$OUT/quick.log"; exit 3; }
tail -3 "$OUT/quick.log"

echo "== the study (limit ${LIMIT}s; 0: none)"
RUN=("$PY" -m arch_lab.cli sweep run "$SWEEP" --workers 1 --threads 2 --parallel-runs 5)
if [ "$LIMIT" -gt 0 ]; then RUN=(timeout -s TERM -k 60 "$LIMIT" "${RUN[@]}"); fi
"${RUN[@]}" >"$OUT/study.log" 2>&1
echo "study exit code $?"
$PY -m arch_lab.cli sweep status "$SWEEP" 2>&1 | tee "$OUT/status.txt"
$PY -m arch_lab.cli sweep export "$SWEEP" --runs --out "$OUT/unet_plateau_2048_synthetic.csv" 2>&1 | tail -2
tar czf "$OUT/study.tar.gz" --exclude='*.pt' --exclude=predictions.h5ad --exclude=tensorboard "$STUDY" "$STUDY.db"
ls -la "$OUT"

echo "== gpu-marked tests"
timeout 120 $PY -m pytest -m gpu -q -p no:cacheprovider tests/training/test_cuda.py tests/networks/test_networks.py \
  >"$OUT/gpu_tests.log" 2>&1
echo "pytest exit code $?"
tail -15 "$OUT/gpu_tests.log"
