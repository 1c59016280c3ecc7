"""`fastddpg eval RUN_DIR --video`: rendered evaluation episodes land in RUN_DIR/videos with exactly one frame
per reset and per step, report.html shows the newest one, and a missing renderer is one line and exit 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from fastddpg import load_run
from fastddpg.cli import main
from fastddpg.core.config import ConfigError
from fastddpg.runs.evaluate import load_actor
from tests.conftest import trained_copy
from tests.test_export import TINY_RUN

pytest.importorskip("pygame", reason="pygame not installed (pip install 'fastddpg[video]')")
iio = pytest.importorskip("imageio.v3", reason="imageio not installed (pip install 'fastddpg[video]')")

from fastddpg.runs import video  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "run"
    return trained_copy(TINY_RUN, path)


def frame_count(path: Path) -> int:
    return len(iio.imread(path, index=None))


@pytest.mark.skipif(not video._ffmpeg_available(), reason="no ffmpeg (pip install imageio-ffmpeg)")
def test_mp4_has_one_frame_per_reset_and_step(run):
    actor, cfg = load_actor(run)
    path, n = video.record_video(actor, cfg.env, run, episodes=2, seed=5, max_episode_steps=20)
    assert path.parent == run / "videos" and path.suffix == ".mp4"
    assert n == 2 * (20 + 1) and frame_count(path) == n
    assert iio.imread(path, index=0).shape == (500, 500, 3)  # Pendulum's 500 x 500 canvas


def test_gif_where_there_is_no_ffmpeg(run, monkeypatch):
    monkeypatch.setattr(video, "_ffmpeg_available", lambda: False)
    actor, cfg = load_actor(run)
    path, n = video.record_video(actor, cfg.env, run, episodes=1, max_episode_steps=20)
    assert path.suffix == ".gif" and n == 21 and frame_count(path) == 21
    assert video.newest_video(run) == path


def test_eval_video_cli_and_report(run, capsys):
    evals_before = len(load_run(run).evals)
    assert main(["eval", str(run), "--episodes", "1", "--video"]) == 0
    out = capsys.readouterr().out
    newest = video.newest_video(run)
    assert f"201 frames -> {newest}" in out  # Pendulum: 200 steps + the reset frame
    assert frame_count(newest) == 201
    assert len(load_run(run).evals) == evals_before + 1
    report = (run / "report.html").read_text()
    tag = "video" if newest.suffix == ".mp4" else "img"
    assert f'<{tag} src="videos/{newest.name}"' in report


def test_missing_pygame_is_one_line(run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)
    monkeypatch.setitem(sys.modules, "pygame.gfxdraw", None)
    videos_before = sorted((run / "videos").glob("*")) if (run / "videos").exists() else []
    evals_before = len(load_run(run).evals)
    assert main(["eval", str(run), "--video"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["fastddpg: error: rendering Pendulum-v1 needs pygame: pip install 'fastddpg[video]'"]
    assert sorted((run / "videos").glob("*")) == videos_before
    assert len(load_run(run).evals) == evals_before  # nothing evaluated when the video cannot be made


def test_bad_video_flags(run, capsys):
    videos_before = sorted((run / "videos").glob("*")) if (run / "videos").exists() else []
    for argv, needle in [(["--video-episodes", "2"], "--video-episodes needs --video"),
                         (["--video", "--video-episodes", "0"], "--video-episodes=0 is invalid"),
                         (["--video", "--episodes", "0"], "--episodes=0 is invalid"),
                         (["--video", "--episodes", "2", "--video-episodes", "3"], "more than the 2 episodes"),
                         (["--video", "--member", "1"], "--member=1 is invalid")]:
        assert main(["eval", str(run), *argv]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and needle in err[0]
    assert (sorted((run / "videos").glob("*")) if (run / "videos").exists() else []) == videos_before


def test_a_population_members_video_shows_that_member(tmp_path, monkeypatch, capsys):
    """eval --video --member K records member K's actor (it recorded member 0's whatever K), and says whose."""
    run = trained_copy([*TINY_RUN, "--num-seeds", "2"], tmp_path / "pop")
    recorded = []
    monkeypatch.setattr(video, "record_video", lambda actor, *a, **k: (recorded.append(actor), (run / "v.mp4", 1))[1])
    assert main(["eval", str(run), "--episodes", "1", "--member", "1", "--video"]) == 0
    assert "video: 1 episode of member 1 (of 2)" in capsys.readouterr().out
    want, _ = load_actor(run, member=1)
    for got, expected in zip(recorded[0].state_dict().values(), want.state_dict().values(), strict=True):
        assert torch.equal(got, expected)


class _Endless:
    """An env with no time limit: never terminated, never truncated."""

    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def reset(self, seed=None):
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}

    def render(self):
        return np.zeros((4, 4, 3), np.uint8)


def test_a_video_of_an_env_without_a_time_limit_stops_with_one_line():
    frames = video._frames(_Endless(), "Endless-v0", lambda obs: torch.zeros(1, 1), episodes=1, seed=0,
                           max_steps=50)
    with pytest.raises(ConfigError, match="did not end within 50 steps; the env needs a time limit"):
        list(frames)


def test_mujoco_renders_headless_with_egl_and_a_render_failure_is_one_line(monkeypatch):
    pytest.importorskip("mujoco")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL"):
        monkeypatch.setenv(name, "")  # (so that the variable _make_env sets is undone after the test too)
        monkeypatch.delenv(name)
    env = video._make_env("InvertedPendulum-v5", None)
    env.close()
    assert os.environ["MUJOCO_GL"] == "egl"  # GLFW, MuJoCo's first choice, needs a display

    class NoOpenGL:
        def render(self):
            raise RuntimeError("an OpenGL platform library has not been loaded into this process")

    with pytest.raises(ConfigError, match=r"cannot render InvertedPendulum-v5 with MUJOCO_GL=egl \(an OpenGL "
                       r"platform library .*\); set MUJOCO_GL to an OpenGL this machine has"):
        video._render(NoOpenGL(), "InvertedPendulum-v5")
