import sys

from mdnet_keras.cli.main import run

sys.exit(run())
