"""fastddpg: a vectorized, device-resident DDPG/TD3 trainer in PyTorch.

    from fastddpg import Config, train
    result = train(Config(num_envs=4, total_steps=10_000))
    result.episodes  # tidy pandas DataFrame: episode, env, global_step, return, length, wall_time
"""

from .config import Config, ConfigError
from .trainer import Trainer, TrainResult, train

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "TrainResult", "Trainer", "__version__", "train"]
