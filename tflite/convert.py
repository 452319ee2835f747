"""Convert a trained MDNet `.keras` model to TFLite and validate it.

    python tflite/convert.py --model=runs/x/best.keras --mode=int8 \
        --dataset=cifar10 --data=../shared/data/cifar10.npz \
        --out=runs/x/model_int8.tflite [--io_type=uint8] [--num_calibration=200] \
        [--micro_out=runs/x/micro --flash_kb=1024 --ram_kb=256] [--edgetpu]

The same command as `python -m mdnet_keras convert`; see tflite/README.md.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402

from mdnet_keras.cli import convert  # noqa: E402

if __name__ == "__main__":
    app.run(convert.main)
