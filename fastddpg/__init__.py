"""fastddpg: a vectorized, device-resident DDPG/TD3 trainer in PyTorch.

    from fastddpg import Config, train
    result = train(Config(num_envs=4, total_steps=10_000))
    result.episodes  # tidy pandas DataFrame: episode, env, global_step, return, length, wall_time
"""

from .checkpoint import latest_checkpoint, load_checkpoint
from .config import Config, ConfigError
from .failsafe import NonFiniteError, TrainingInterrupted
from .rundir import RunData, load_run
from .trainer import Trainer, TrainResult, train

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "NonFiniteError", "RunData", "TrainResult", "Trainer", "TrainingInterrupted",
           "__version__", "latest_checkpoint", "load_checkpoint", "load_run", "train"]
