"""``fastddpg eval RUN_DIR --video``: watch the agent. Noise-free episodes rendered with
``render_mode="rgb_array"`` into ``RUN_DIR/videos/eval-<timestamp>.mp4`` (H.264 through the ffmpeg binary that
the imageio-ffmpeg wheel ships), or a GIF where no ffmpeg is available; ``report.html`` shows the newest one.

Episode i is seeded ``seed + i``, as `fastddpg.runs.evaluate` seeds its episodes, so the video shows the same
episodes as the evaluation. Each episode contributes its reset frame and one frame per step. Needs the
``video`` extra (pygame for the classic-control renderers, imageio, imageio-ffmpeg).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.config import ConfigError, first_line
from ..core.fileio import os_error_of
from .evaluate import MAX_EPISODE_STEPS

if TYPE_CHECKING:
    import gymnasium as gym

VIDEO_DIR = "videos"
VIDEO_SUFFIXES = (".mp4", ".gif")
VIDEO_HINT = "pip install 'fastddpg[video]'"


def _make_env(env_id: str, max_episode_steps: int | None) -> gym.Env:
    """``env_id`` rendering to rgb_array; errors (an unknown id, a missing renderer) as one-line ConfigErrors."""
    import gymnasium as gym

    from ..envs.vector import is_mujoco_env, settotalmass_filtered

    # pygame initialises its display and audio even to draw off-screen; the dummy drivers need no X or sound
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if is_mujoco_env(env_id) and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # with no display MuJoCo's first choice, GLFW, cannot open a context: EGL renders without one
        os.environ.setdefault("MUJOCO_GL", "egl")
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    try:
        with settotalmass_filtered() if is_mujoco_env(env_id) else contextlib.nullcontext():
            return gym.make(env_id, render_mode="rgb_array", **kwargs)
    except gym.error.Error as e:
        raise _render_error(env_id, e) from None


def _frames(env: gym.Env, env_id: str, actor: torch.nn.Module, episodes: int, seed: int,
            max_steps: int = MAX_EPISODE_STEPS) -> Iterator[np.ndarray]:
    """Rendered frames (H, W, 3) uint8 of ``episodes`` noise-free episodes, episode i seeded seed + i; a
    ConfigError if one has not ended after ``max_steps`` steps, as the evaluation's (`evaluate_actor`)."""
    space = env.action_space
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        yield _render(env, env_id)
        for _ in range(max_steps):
            with torch.no_grad():
                action = actor(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
            # within the bounds, as VecEnv.step clips (a float step outside asymmetric ones is refused)
            obs, _, terminated, truncated, _ = env.step(np.clip(action.astype(space.dtype), space.low, space.high))
            yield _render(env, env_id)
            if terminated or truncated:
                break
        else:
            raise ConfigError(f"the video's episodes of {env_id} did not end within {max_steps} steps; the env "
                              "needs a time limit (gymnasium.wrappers.TimeLimit).")


def _render(env: gym.Env, env_id: str) -> np.ndarray:
    from gymnasium.error import DependencyNotInstalled

    try:
        return np.asarray(env.render())
    except DependencyNotInstalled as e:
        raise _render_error(env_id, e) from None
    except Exception as e:  # MuJoCo without an OpenGL it can use: mujoco.FatalError, RuntimeError, AttributeError
        from ..envs.vector import is_mujoco_env

        if not is_mujoco_env(env_id):
            raise
        backend = os.environ.get("MUJOCO_GL", "glfw")
        why = first_line(e) or type(e).__name__
        raise ConfigError(f"cannot render {env_id} with MUJOCO_GL={backend} ({why}); set MUJOCO_GL to an OpenGL "
                          "this machine has: egl (a GPU driver or libEGL), osmesa (libOSMesa) or glfw (a "
                          "display).") from None


def _render_error(env_id: str, e: Exception) -> ConfigError:
    if "pygame" in str(e):
        return ConfigError(f"rendering {env_id} needs pygame: {VIDEO_HINT}")
    return ConfigError(f"cannot render {env_id} to video: {e}")


def _ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def new_video_path(run_dir: str | Path, suffix: str) -> Path:
    """``RUN_DIR/videos/eval-<YYYYmmdd-HHMMSS>[-k]<suffix>``, a name not taken yet (the directory is created)."""
    d = Path(run_dir) / VIDEO_DIR
    d.mkdir(exist_ok=True)
    stem = "eval-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, k = d / f"{stem}{suffix}", 1
    while path.exists():
        k += 1
        path = d / f"{stem}-{k}{suffix}"
    return path


def record_video(actor: torch.nn.Module, env_id: str, run_dir: str | Path, episodes: int = 1, seed: int = 0,
                 max_episode_steps: int | None = None) -> tuple[Path, int]:
    """Render ``episodes`` noise-free episodes of ``env_id`` with ``actor`` (obs (1, obs_dim) -> action
    (1, act_dim), CPU) into a new video in ``run_dir/videos``. Returns (path, number of frames)."""
    if episodes < 1:
        raise ConfigError(f"--video-episodes={episodes} is invalid: record at least 1 episode.")
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ConfigError(f"writing videos needs imageio: {VIDEO_HINT}") from None
    env = _make_env(env_id, max_episode_steps)
    try:
        fps = int(env.metadata.get("render_fps") or 30)
        frames = _frames(env, env_id, actor, episodes, seed)
        first = next(frames)  # fails (pygame missing, ...) before a file is created
        mp4 = _ffmpeg_available()
        path = new_video_path(run_dir, ".mp4" if mp4 else ".gif")
        if mp4:  # even frame sizes for yuv420p; frames are streamed to ffmpeg, not held in memory
            writer = imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=2,
                                        ffmpeg_log_level="error")
        else:
            writer = imageio.get_writer(path, mode="I", duration=1000 / fps, loop=0)
        n = 0
        try:
            with writer:
                for frame in itertools.chain([first], frames):
                    writer.append_data(frame)
                    n += 1
        except BaseException as e:
            full = encoder_disk_error(e, path)  # before the partial file goes, which frees its space
            path.unlink(missing_ok=True)
            if full is not None:
                raise full from e
            raise
    finally:
        env.close()
    return path, n


def encoder_disk_error(exc: BaseException, path: Path, free_below: int = 1 << 20) -> OSError | None:
    """ENOSPC for ``path`` when ``exc`` is how a full disk shows through the video encoder, else None. ffmpeg writes
    the mp4 in its own process, so a full disk reaches imageio as a broken pipe or an encoder error, never as
    ENOSPC: when the file's filesystem has less than ``free_below`` bytes left, that is the cause."""
    if not isinstance(exc, Exception) or os_error_of(exc) is not None:  # Ctrl-C, or a write error already plain
        return None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return None
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) if free < free_below else None


def newest_video(run_dir: str | Path) -> Path | None:
    """The most recent video in ``run_dir/videos``, or None."""
    d = Path(run_dir) / VIDEO_DIR
    found = [p for p in d.iterdir() if p.suffix in VIDEO_SUFFIXES] if d.is_dir() else []
    return max(found, key=lambda p: (p.stat().st_mtime, p.name)) if found else None
