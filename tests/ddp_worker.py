"""Run under torchrun by tests/test_distributed.py: train, then save this rank's parameters.

usage: ddp_worker.py OUTPUT_PREFIX key=value ...   (TrainConfig overrides)
"""
import sys

import torch
from omegaconf import OmegaConf

from deepspeech_pytorch.configs import TrainConfig
from deepspeech_pytorch.distributed import shutdown
from deepspeech_pytorch.training import Trainer

config = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.from_dotlist(sys.argv[2:]))
trainer = Trainer(config)
result = trainer.fit()
torch.save({"state": trainer.model.state_dict(), "losses": result.losses}, f"{sys.argv[1]}.rank{trainer.dist.rank}")
shutdown()
