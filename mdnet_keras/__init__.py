"""mdnet-keras: MDNet, a lightweight multi-scale differential-attention image
classifier for Keras 3, with a TFLite / TFLite Micro deployment path."""

from mdnet_keras.layers import DifferentialAttention
from mdnet_keras.layers import DropPath
from mdnet_keras.layers import MultiScaleChannelConv
from mdnet_keras.layers import PixelNormalization
from mdnet_keras.layers import StandardAttention
from mdnet_keras.models import MDNET_VARIANTS
from mdnet_keras.models import MDNet

__version__ = "0.1.0"
