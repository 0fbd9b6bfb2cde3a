#!/usr/bin/env bash
# Run a sweep as a Slurm job array: every array task is one `arch-lab sweep worker` on the same study.
#
#   export ARCH_LAB_SWEEP_STORAGE="postgresql+psycopg2://USER:PASSWORD@DBHOST:5432/sweeps"
#   mkdir -p runs/slurm
#   sbatch --array=0-7 scripts/slurm_sweep.sh sweeps/tune_unet1d.yaml
#
# Submit from an environment where `arch-lab` is on PATH (sbatch passes the environment on).
# Workers may start in any order: the first one creates the study (and queues its budget), the others join it.
# Together they run exactly budget.n_trials trials. A task that is preempted or killed loses its trial only
# until the heartbeat grace period passes; another worker then marks it failed and runs it again. Resubmit the
# same command to resume an interrupted study. Run directories go below the submission directory
# (study.output_dir, default runs/sweeps/): put it on a shared filesystem.
#
#SBATCH --job-name=arch-lab-sweep
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=24:00:00
#SBATCH --output=runs/slurm/%x-%A_%a.out
#SBATCH --signal=B:TERM@120
set -euo pipefail

sweep=${1:?usage: sbatch --array=0-N scripts/slurm_sweep.sh SWEEP.yaml}
storage=${ARCH_LAB_SWEEP_STORAGE:?set ARCH_LAB_SWEEP_STORAGE to a PostgreSQL URL shared by all nodes}
cd "${SLURM_SUBMIT_DIR:-.}"
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

# SIGTERM (preemption, scancel, --signal above) requeues the running trial before the worker exits.
exec arch-lab sweep worker "$sweep" --storage "$storage" \
  --worker-id "${SLURM_ARRAY_TASK_ID:-0}" --threads "${SLURM_CPUS_PER_TASK:-1}"
