#!/usr/bin/env bash
# restart the probe chain in the new order once the real-task backbone studies are done
cd /work/main
until grep -q "=== probe compute_synthetic" logs/run_probes.log; do sleep 5; done
pkill -f "bash logs/chain.sh"; pkill -f "bash scripts/run_probes.sh"; pkill -f "sweep run sweeps/probes/compute_synthetic"
sleep 3; pkill -f "sweep worker sweeps/probes/compute_synthetic"
sleep 5
source /work/venv/bin/activate
bash scripts/run_probes.sh
