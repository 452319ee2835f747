"""mdnet-keras: MDNet, a lightweight multi-scale differential-attention image
classifier for Keras 3, with a TFLite / TFLite Micro deployment path."""

# Before Keras imports TensorFlow: under `python -m mdnet_keras` hide its log
# lines (they print at import), unless `--verbose`.
from mdnet_keras import tf_logs as _tf_logs

_tf_logs.hide_for_command_line()

from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.layers import DropPath
from mdnet_keras.layers import MultiScaleChannelConv
from mdnet_keras.layers import PixelNormalization
from mdnet_keras.layers import StandardAttention
from mdnet_keras.models import MDNET_VARIANTS
from mdnet_keras.models import MDNet

__version__ = "0.1.0"
