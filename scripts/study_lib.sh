# Shared by the study scripts (run_probes.sh, run_gene_scale.sh); source it, do not run it.
# study_env: the repository root as working directory, .venv active, one BLAS thread per worker process.
# run_study YAML OUT_CSV [ARGS...]: run a sweep YAML with $WORKERS workers of one thread each (it resumes where it
# stopped), then export one row per completed run to OUT_CSV; ARGS (e.g. --profile g2048) go to both commands.

study_env() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  if [[ -z "${VIRTUAL_ENV:-}" && -f .venv/bin/activate ]]; then
    # shellcheck disable=SC1091
    source .venv/bin/activate
  fi
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
}

run_study() {
  local yaml="$1" out="$2"
  shift 2
  echo "=== $(basename "$yaml" .yaml) $* $(date +%H:%M:%S)"
  arch-lab sweep run "$yaml" --workers "${WORKERS:-2}" --threads 1 "$@"
  arch-lab sweep export "$yaml" --runs --out "$out" "$@"
}
