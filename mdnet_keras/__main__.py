import os
import sys

# Keep TensorFlow's C++ start-up chatter out of the command-line output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mdnet_keras.cli.main import run  # noqa: E402

sys.exit(run())
