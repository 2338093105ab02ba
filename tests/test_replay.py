"""Attack replay: the bounded record of iterates, what each recorded step is, and `--frames`."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from percviz.analysis.replay import build_replay
from percviz.attacks import run_attack
from percviz.attacks.frames import MAX_FRAMES, FrameRecorder
from percviz.cli import main


def test_pgd_keeps_evenly_spaced_iterates_within_the_limit(tiny, photos32) -> None:  # type: ignore[no-untyped-def]
    eps = 8 / 255
    result = run_attack("pgd", tiny, photos32, {"steps": 100, "eps": eps}, frames=MAX_FRAMES)
    assert result.frames is not None and result.frames.dtype == torch.float16
    k = len(result.frame_iterations)
    assert 3 <= k <= MAX_FRAMES and result.frames.shape == (k, 3, 32, 32)
    its = result.frame_iterations
    assert its[0] == 0 and its[-1] == 100 and list(its) == sorted(set(its))
    assert len({b - a for a, b in itertools.pairwise(its[1:-1])}) == 1  # one stride
    torch.testing.assert_close(result.frames[0].float(), result.x[0], atol=1e-3, rtol=0)  # float16 of x
    torch.testing.assert_close(result.frames[-1].float(), result.x_adv[0], atol=1e-3, rtol=0)
    linf = [d for d, _ in result.frame_distances]
    assert linf[0] == 0.0 and max(linf) <= eps + 1e-7  # measured before the float16 copy
    assert result.frame_distances[-1][0] == pytest.approx(result.constraints["linf"][0], abs=1e-7)
    plain = run_attack("pgd", tiny, photos32, {"steps": 100, "eps": eps})
    assert plain.frames is None and torch.equal(plain.x_adv, result.x_adv)  # recording changes nothing


def test_a_one_shot_attack_replays_start_and_end(tiny, photos32) -> None:  # type: ignore[no-untyped-def]
    result = run_attack("fgsm", tiny, photos32[:1], {"eps": 0.03}, frames=MAX_FRAMES)
    assert result.frame_iterations == (0, 1)


def test_the_recorder_refuses_a_replay_without_steps() -> None:
    with pytest.raises(ValueError, match="at least 3 frames"):
        FrameRecorder(2)


def test_each_recorded_step_is_classified_as_the_model_sees_it(tiny, photos32) -> None:  # type: ignore[no-untyped-def]
    result = run_attack("pgd", tiny, photos32[:1], {"steps": 10, "eps": 0.05}, frames=MAX_FRAMES)
    replay = build_replay(tiny, result, tiny.labels)
    assert replay is not None and len(replay.iterations) == 11 and replay.total == 10
    with torch.no_grad():
        probs = torch.softmax(tiny(result.frames.float()), 1)
    assert list(replay.classes) == [tiny.labels[i] for i in probs.argmax(1).tolist()]
    np.testing.assert_allclose(replay.probabilities, probs.max(1).values.numpy(), rtol=1e-5)
    assert replay.classes[0] == tiny.labels[int(result.labels[0])]
    assert replay.loss[0] == pytest.approx(result.history[0]["loss"]) and replay.loss[-1] is None
    assert replay.caption(0).startswith(f"step 0 of 10 · {replay.classes[0]}")
    assert build_replay(tiny, run_attack("pgd", tiny, photos32[:1], {"steps": 2}), tiny.labels) is None


def test_cli_frames_writes_npz_and_an_animated_gif(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    out = tmp_path / "run"
    code = main(
        ["attack", "--image", "sample:chelsea", "--attack", "pgd", "--param", "steps=6",
         "--frames", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    data = np.load(out / "frames.npz")
    assert data["frames"].shape == (7, 224, 224, 3) and list(data["iterations"]) == list(range(7))
    report = json.loads((out / "result.json").read_text())
    assert data["classes"][0] == report["prediction_before"][0]["label"]
    assert data["classes"][-1] == report["prediction_after"][0]["label"]
    assert data["linf_255"][-1] == pytest.approx(report["metrics"]["linf"] * 255, abs=1e-4)
    gif = Image.open(out / "replay.gif")
    assert gif.n_frames == 7 and gif.size == (448, 224)
