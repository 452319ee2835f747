# CIFAR-10, all 50,000 training images, 15 epochs: recipes and models side by side on one GPU.
# Each (model, recipe) pair trains in its own process through benchmarks/recipe.py, that is through
# the package's training loop (what `python -m mdnet_keras train` runs) on JAX; one table and plot
# of all pairs follow, then the host-overhead benchmark's tiny model on the same GPU.
# Run from the repository root on the GPU machine with .whl/ and .device/ carried (README.md here):
#   PAIRS="mdnet:fast mdnet:legacy" EPOCHS=15 STOP=470 bash benchmarks/results/gpu/recipe15/run.sh
# (TRAIN, TEST, BATCH, MEM_FRACTION and HOST_STOP override the defaults below.)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=${MEM_FRACTION:-0.12}
DATA=(--data=.device/c10_q95z.npz "--data_label=CIFAR-10 (JPEG q95 copy of the JPEG copy)"
      --train_images=${TRAIN:-50000} --test_images=${TEST:-10000} --batch_size=${BATCH:-256})
nvidia-smi -L; date
for pair in $PAIRS; do
  m=${pair%:*}; r=${pair#*:}
  timeout $STOP python3 benchmarks/recipe.py --models=$m --recipes=$r --epochs=$EPOCHS \
      "${DATA[@]}" --out=/tmp/r/$m-$r > /tmp/r-$m-$r.log 2>&1 &
done
wait; date
python3 benchmarks/recipe.py --models= --include=$(ls /tmp/r/*/cifar10.json | paste -sd,) \
    "${DATA[@]}" --out=$OUT/recipe15 > /tmp/merge.log 2>&1 || tail -5 /tmp/merge.log
rm -rf $OUT/recipe15/tmp
timeout ${HOST_STOP:-60} python3 benchmarks/host_overhead.py --backends=jax --rounds=1 \
    --data=.device/c10_q95z.npz --out=$OUT/host_overhead > /tmp/host.log 2>&1 || tail -5 /tmp/host.log
for f in /tmp/r/*/tmp/cifar10/mdnet-fast-*/model.weights.h5; do cp "$f" $OUT/mdnet_fast.weights.h5; done
cd /tmp && tar czf $OUT/runs.tgz r-*.log r/*/cifar10.json r/*/tmp/cifar10/*/{config.json,history.csv,metrics.json}
tail -n 3 /tmp/r-*.log; cat $OUT/recipe15/cifar10.md; cat $OUT/host_overhead/host_overhead.md; ls -la $OUT
