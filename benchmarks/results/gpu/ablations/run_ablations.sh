# Ablations: MDNet vs standard attention vs one kernel size, 2 seeds, equal epochs.
# MODELS picks the models (default: all three); EXTRA adds flags (EXTRA=--drop_path_rate=0).
# Run from the repository root on the GPU machine, .whl/ and .device/ carried (see the README).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.14
nvidia-smi -L; date
python3 - <<'PY'
import sys, time, numpy as np
t = time.time()
sys.path.insert(0, ".device")
from pack_cifar_jpeg import unpack
d = np.load(".device/cifar10_train_q80.npz")
np.savez("/tmp/c10.npz", x_train=unpack(d["train_jpeg"], d["train_offsets"]), y_train=d["y_train"].astype("int64"))
print("unpacked in", round(time.time() - t, 1), "s")
PY
for s in 0 1; do for m in ${MODELS:-mdnet mdnet_standard_attention mdnet_single_kernel}; do
  timeout ${STOP} python3 tools/gpu_train_cifar10.py train --model=$m --data=/tmp/c10.npz --epochs=${EPOCHS} \
    --budget_s=${BUDGET} --checkpoint_every=100 --seed=$s ${EXTRA:-} --out=/tmp/runs/s$s > /tmp/runs_${m}_s$s.log 2>&1 &
done; done
wait; date
for s in 0 1; do for m in ${MODELS:-mdnet mdnet_standard_attention mdnet_single_kernel}; do
  cp /tmp/runs/s$s/$m.weights.h5 $OUT/${m}_s$s.weights.h5
done; done
cd /tmp && tar czf $OUT/reports.tgz runs/*/*.report.json runs_*.log
tail -n 2 /tmp/runs_*.log; ls -la $OUT
