"""Training and evaluation of MDNet with `model.fit`.

- `recipe`: loss (label smoothing), AdamW with warm-up + cosine decay and
  weight decay kept off norms, biases and lambdas, top-1 / top-5 metrics,
  class weights.
- `run`: `train(config)`, one resumable run in one run folder.
- `evaluation`: `classification_report` and plots (NumPy + matplotlib).
"""

from mdnet_keras.training.evaluation import classification_report
from mdnet_keras.training.run import RunFolderError
from mdnet_keras.training.run import TrainConfig
from mdnet_keras.training.run import TrainingDivergedError
from mdnet_keras.training.run import resolve_config
from mdnet_keras.training.run import train
