"""Train a tiny run: ``python tests/ddp_train.py DATA OUT STEPS [--resume]``, alone or under
``torchrun`` (used by test_distributed.py)."""

import sys

import torch

from conftest import TINY_AIR
from inverse_air.plan import run_config_for
from inverse_air.train import train

torch.set_num_threads(1)
data, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = run_config_for(data, "3d", {"steps": steps, "batch_size": 8, "elbo_batch_size": 4, "log_every": 1,
                                     "checkpoint_every": 2, "image_every": 2, "sleep_fraction": 1.0},
                        TINY_AIR)
train(config, out, resume="--resume" in sys.argv, progress=False, device="cpu")
