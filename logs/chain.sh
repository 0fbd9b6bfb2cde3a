#!/usr/bin/env bash
while pgrep -f "sweep run sweeps/probes/backbones_synthetic" > /dev/null; do sleep 10; done
source /work/venv/bin/activate
cd /work/main && bash scripts/run_probes.sh
