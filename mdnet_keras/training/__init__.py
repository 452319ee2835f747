"""Training and evaluation of MDNet with `model.fit`.

- `recipe`: named recipes, loss (label smoothing), SGD-Nesterov / AdamW
  with warm-up and one-cycle or cosine decay, weight decay kept off norms,
  biases and lambdas, weight EMA, top-1 / top-5 metrics, class weights.
- `config`: `TrainConfig`, every option of a run, and `resolve_config`.
- `run`: `train(config)`, one resumable run in one run folder.
- `run_folder`: the folder's state, the resume check, its history.
- `callbacks`: the run's callbacks and their order.
- `batchnorm`: BatchNorm statistics re-estimated for the averaged weights.
- `distribution`: `tf.distribute` and `keras.distribution` set-up.
- `evaluation`: `classification_report`, flip TTA and plots.
"""

from mdnet_keras.training.callbacks import TrainingDivergedError
from mdnet_keras.training.config import TrainConfig
from mdnet_keras.training.config import resolve_config
from mdnet_keras.training.evaluation import classification_report
from mdnet_keras.training.run import train
from mdnet_keras.training.run_folder import RunFolderError

__all__ = [
    "RunFolderError",
    "TrainConfig",
    "TrainingDivergedError",
    "classification_report",
    "resolve_config",
    "train",
]
