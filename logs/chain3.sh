#!/usr/bin/env bash
cd /work/main
until grep -q "=== probe unet_dissection_synthetic" logs/run_probes2.log; do sleep 5; done
pkill -f "bash logs/chain2.sh"; pkill -f "bash scripts/run_probes.sh"; pkill -f "sweep run sweeps/probes/unet_dissection_synthetic"
sleep 3; pkill -f "sweep worker sweeps/probes/unet_dissection_synthetic"
sleep 5
source /work/venv/bin/activate
bash scripts/run_probes.sh
