"""The cold-start race, hosted caps on every value that reaches an attack, cancel inside
a step, the per-job time limit, shutdown, and targeted runs whose target is already the class."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from percviz.attacks import get_attack, registry, run_attack
from percviz.attacks.base import AttackCancelled, AttackContext, stop_when
from percviz.attacks.caps import check_any_params, check_params, declared_loop_params
from percviz.errors import ModelUnavailableError, ParameterError
from percviz.limits import COST_LIMITS, HOSTED, LOCAL
from percviz.models import Classifier, ModelSpec, model_status
from percviz.serving.jobs import ComputeQueue, QueueClosedError

ROOT = Path(__file__).resolve().parent.parent

RACE = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from percviz.attacks import registry
barrier = threading.Barrier(16)
sizes = []
def call():
    barrier.wait()
    sizes.append(len(registry()))
threads = [threading.Thread(target=call) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"sizes": sizes, "after": len(registry())}))
"""


def test_registry_cold_start_race_fresh_interpreter() -> None:
    """16 threads call registry() at once on a fresh import: every one sees the full registry."""
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", RACE, str(ROOT)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert seen["after"] >= 17 and seen["sizes"] == [seen["after"]] * 16, seen


# ------------------------------------------------------------------------ hosted parameter caps


def _declared(spec_id: str) -> tuple[set[str], set[str]]:
    return declared_loop_params(get_attack(spec_id))


def _caps() -> list[tuple[str, str, int]]:
    out = []
    for spec_id in registry():
        iteration, cost = _declared(spec_id)
        for name in sorted(iteration):
            out.append((spec_id, name, HOSTED.max_steps))
        for name in sorted(cost - iteration):
            out.append((spec_id, name, getattr(HOSTED, COST_LIMITS.get(name, "max_cost"))))
    return out


@pytest.mark.parametrize(("attack", "name", "cap"), _caps())
def test_every_loop_and_cost_parameter_is_capped_whatever_its_type(attack: str, name: str, cap: int) -> None:
    for over in (cap + 1, float(cap + 1), f"{cap + 1}", 1e23, float("inf"), [1, float(cap) + 0.5]):
        with pytest.raises(ParameterError, match=f"at most {cap} for '{name}'"):
            check_params(attack, {name: over}, HOSTED)
    check_params(attack, {name: cap}, HOSTED)
    check_params(get_attack(attack), {name: float(cap)}, HOSTED)


def test_caps_cover_the_per_class_and_search_parameters() -> None:
    caps = {(a, n) for a, n, _ in _caps()}
    assert ("deepfool", "candidates") in caps and ("deepfool", "steps") in caps
    assert ("cw_l2", "search_steps") in caps
    with pytest.raises(ParameterError, match="at most 20 for 'candidates'; got 999"):
        check_params("deepfool", {"candidates": 999, "steps": 200}, HOSTED)
    check_params("deepfool", {"candidates": 999, "steps": 200}, LOCAL)


def test_the_registry_wide_check_still_checks_floats() -> None:
    with pytest.raises(ParameterError, match=r"at most 200 for 'steps'; got 1000\.0"):
        check_any_params({"steps": 1000.0}, HOSTED)
    with pytest.raises(ParameterError, match="must be a number"):
        check_any_params({"steps": float("nan")}, HOSTED)


def test_hosted_template_refuses_a_value_no_page_checked(tiny: Classifier, photos32, monkeypatch) -> None:
    """A sweep that sends steps = 1000.0 straight to run_attack is refused there in hosted mode."""
    monkeypatch.setenv("PERCVIZ_HOSTED", "1")
    with pytest.raises(ParameterError, match="at most 200 for 'steps'"):
        run_attack("pgd", tiny, photos32[:1], {"steps": 1000.0, "eps": 0.01})
    monkeypatch.delenv("PERCVIZ_HOSTED")
    run_attack("pgd", tiny, photos32[:1], {"steps": 2, "eps": 0.01})


@pytest.mark.skipif(model_status("alexnet").available, reason="AlexNet weights are installed here")
def test_a_job_that_can_only_fail_is_refused_before_queueing() -> None:
    ids = [a for a in registry() if "distance_net" in get_attack(a).param_names()]
    assert ids
    for limits, shown in ((HOSTED, False), (LOCAL, True)):
        with pytest.raises(ModelUnavailableError, match="distance_net=alexnet needs the AlexNet") as info:
            check_params(ids[0], {"distance_net": "alexnet"}, limits)
        assert ("hub" in str(info.value) or "/" in str(info.value)) == shown  # no server path when hosted
    check_params(ids[0], {"distance_net": "self"}, HOSTED)


# ------------------------------------------------------------------------ cancel inside a step


class _Counting(nn.Module):
    """A 1000-class CNN on 32×32 that counts its forward calls (and can act on the k-th)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(2),
                nn.Flatten(),
                nn.Linear(32, 1000),
            )
        self.calls = 0
        self.on_call: dict[int, object] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        action = self.on_call.get(self.calls)
        if callable(action):
            action()
        return self.body(x)


def _wide() -> tuple[Classifier, _Counting]:
    net = _Counting()
    spec = ModelSpec(
        id="wide",
        title="1000-class test CNN",
        source="tests",
        input_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        weight_file=None,
        feature_layers=("body.1",),
        cam_layer="body.1",
    )
    return Classifier(net, spec), net


DEEPFOOL_REPRO = {
    "candidates": 999,
    "steps": 200,
}  # measured: 131 s for the first step at 224×224 before the cap
CHUNKS_PER_STEP = 32  # 999 candidates in gradient calls of 32 rows


def test_deepfool_cancel_is_honoured_between_candidate_gradients() -> None:
    model, net = _wide()
    black = torch.zeros(1, 3, 32, 32)
    flag = {"stop": False}
    net.on_call[4] = lambda: flag.update(stop=True)  # clean logits, candidates, then two chunks
    with stop_when(lambda: flag["stop"]):
        result = run_attack("deepfool", model, black, DEEPFOOL_REPRO)
    assert result.cancelled
    assert result.backward_passes == 2 < CHUNKS_PER_STEP, result.backward_passes
    assert torch.equal(result.x_adv, black)  # no step was completed, so nothing changed
    assert result.history == []


def test_queue_cancel_reaches_inside_a_deepfool_step() -> None:
    model, net = _wide()
    queue = ComputeQueue(slots=1, per_owner=1, time_limit_s=0)
    holder: list = []
    net.on_call[5] = lambda: holder[0].cancel()
    started = threading.Event()

    def work(progress):
        started.wait(10)
        return run_attack("deepfool", model, torch.zeros(1, 3, 32, 32), DEEPFOOL_REPRO, progress=progress)

    holder.append(queue.submit(work, owner="a"))
    started.set()
    job = holder[0]
    assert job.wait(120)
    assert job.status == "cancelled" and job.error is None
    assert job.result.cancelled and job.result.backward_passes == 3 < CHUNKS_PER_STEP


def test_time_limit_stops_a_job_inside_its_first_step() -> None:
    model, _ = _wide()
    queue = ComputeQueue(slots=1, per_owner=1, time_limit_s=1e-6)
    job = queue.submit(
        lambda progress: run_attack(
            "deepfool", model, torch.zeros(1, 3, 32, 32), DEEPFOOL_REPRO, progress=progress
        ),
        owner="a",
    )
    assert job.wait(120)
    assert job.status == "failed" and job.timed_out
    assert job.error is not None and "time limit" in job.error and "\n" not in job.error
    assert job.result.backward_passes < CHUNKS_PER_STEP


def test_hosted_queues_get_the_hosted_time_limit(monkeypatch) -> None:
    monkeypatch.setenv("PERCVIZ_HOSTED", "1")
    assert ComputeQueue().time_limit_s == HOSTED.job_time_limit_s > 0
    monkeypatch.setenv("PERCVIZ_JOB_TIME_LIMIT_S", "7")
    assert ComputeQueue().time_limit_s == 7
    monkeypatch.delenv("PERCVIZ_HOSTED")
    monkeypatch.delenv("PERCVIZ_JOB_TIME_LIMIT_S")
    assert ComputeQueue().time_limit_s == 0


def test_check_cancel_outside_a_job_never_raises(tiny: Classifier) -> None:
    ctx = AttackContext(tiny, 0, None)
    ctx.check_cancel()
    with stop_when(lambda: True):
        ctx2 = AttackContext(tiny, 0, None)
    with pytest.raises(AttackCancelled):
        ctx2.check_cancel()


# ------------------------------------------------------------------------ shutdown


def test_close_cancels_running_and_waiting_jobs_and_refuses_new_ones() -> None:
    queue = ComputeQueue(slots=1, per_owner=5, time_limit_s=0)
    running = threading.Event()

    def long(progress):
        running.set()
        for i in range(100_000):
            if progress({"iteration": i, "total": 100_000}) is False:
                return "stopped"
            threading.Event().wait(0.01)
        return "finished"

    first, second = queue.submit(long, owner="a"), queue.submit(long, owner="b")
    assert running.wait(10)
    assert queue.close(grace_s=30)
    assert (first.status, first.result) == ("cancelled", "stopped")
    assert second.status == "cancelled" and second.result is None
    with pytest.raises(QueueClosedError, match="shutting down"):
        queue.submit(long, owner="c")


# ------------------------------------------------------------------------ targeted runs


def test_targeted_run_whose_target_is_already_the_class_is_refused(tiny: Classifier, photos32) -> None:
    x = photos32[:1]
    label = int(tiny(x).argmax(1))
    with pytest.raises(ParameterError, match=f"already classified as the target class {label}"):
        run_attack("pgd", tiny, x, {"target": label, "eps": 0.03, "steps": 2})
    batch = photos32[:4]
    labels = tiny(batch).argmax(1)
    result = run_attack("fgsm", tiny, batch, {"target": int(labels[0]), "eps": 0.0})
    assert bool(result.success[0]) and result.info["already_target"][0]  # at the target, and said so
    assert result.info["already_target"][1:] == (labels[1:] == labels[0]).tolist()


def test_an_evaluation_reports_each_image_already_at_its_target(tiny: Classifier, photos32) -> None:
    """In a batch, an image already of the target class keeps η = 0 (it has reached the target);
    each row and the summary say so, instead of a silent zero perturbation."""
    from percviz.evaluation import EvalImage, evaluate, make_runs, summarize

    batch = photos32
    labels = tiny(batch).argmax(1)
    images = [EvalImage.from_pixels(f"im{i}", im.permute(1, 2, 0).numpy()) for i, im in enumerate(batch)]
    out = evaluate(tiny, images, make_runs(["fgsm"], {"target": int(labels[0]), "eps": 0.01}), explain=False)
    flags = [row["already_target"] for row in out.rows]
    assert flags[0] and flags == (labels == labels[0]).tolist()
    assert summarize(out.rows)[0]["already_target"] == sum(flags)
    elsewhere = int(torch.arange(10)[~torch.isin(torch.arange(10), labels)][0])  # a class no image has
    other = evaluate(tiny, images, make_runs(["fgsm"], {"target": elsewhere, "eps": 0.01}), explain=False)
    assert [row["already_target"] for row in other.rows] == [False] * len(images)
    assert summarize(other.rows)[0]["already_target"] == 0
    untargeted = evaluate(tiny, images, make_runs(["fgsm"], {"eps": 0.01}), explain=False)
    assert [row["already_target"] for row in untargeted.rows] == [False] * len(images)  # no target


# ------------------------------------------------------------------------ hosted mode names no server path


@pytest.mark.skipif(model_status("alexnet").available, reason="AlexNet weights are installed here")
def test_hosted_mode_names_no_server_path(monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from percviz.models.zoo import unavailable_message, weight_path

    status = model_status("alexnet")
    folder = str(weight_path(status.spec).parent)
    assert folder in unavailable_message(status)  # local mode says where the file goes
    monkeypatch.setenv("PERCVIZ_HOSTED", "1")
    assert folder not in unavailable_message(
        status
    ) and "not installed on this server" in unavailable_message(status)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    assert not at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert "not installed on this server" in shown and folder not in shown


def test_both_run_templates_take_their_limits_as_an_argument(tiny, photos32):
    """One template for both tasks: the caps come from the limits given (not from the environment),
    and each template refuses the other task's attacks with one sentence."""
    from conftest import tiny_regressor

    from percviz.attacks import run_attack
    from percviz.attacks.regression_run import run_regression_attack

    x = photos32[:1]
    with pytest.raises(ParameterError, match="Hosted mode allows at most 200 for 'steps'"):
        run_attack("pgd", tiny, x, {"steps": 500}, limits=HOSTED)
    assert run_attack("pgd", tiny, x, {"steps": 2}, limits=HOSTED).forward_passes == 4
    with pytest.raises(ParameterError, match="Hosted mode allows at most 200 for 'steps'"):
        run_regression_attack("reg_linear", tiny_regressor(), x, {"steps": 500}, limits=HOSTED)
    with pytest.raises(ParameterError, match="attacks classifiers; run it with run_attack"):
        run_regression_attack("pgd", tiny_regressor(), x, {}, limits=LOCAL)
    with pytest.raises(ParameterError, match="attacks regression models"):
        run_attack("reg_linear", tiny, x, {}, limits=LOCAL)
