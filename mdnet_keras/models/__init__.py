from mdnet_keras.models.mdnet import MDNet
from mdnet_keras.models.mdnet_presets import MDNET_VARIANTS
from mdnet_keras.models.mdnet_presets import MDNET_WEIGHTS
