"""`fastddpg eval RUN_DIR --video`: rendered evaluation episodes land in RUN_DIR/videos with exactly one frame
per reset and per step, report.html shows the newest one, and a missing renderer is one line and exit 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fastddpg import load_run
from fastddpg.cli import main
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
                         (["--video", "--episodes", "0"], "--episodes=0 is invalid")]:
        assert main(["eval", str(run), *argv]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and needle in err[0]
    assert (sorted((run / "videos").glob("*")) if (run / "videos").exists() else []) == videos_before
