"""Every attack declares its strength, loops and bound; the run template judges the bound.

``success`` must be fooled **and** within every hard bound on distances re-measured against the
original image: an over-budget image is never a success, whatever the attack reports.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch

from percviz.attacks import base, get_attack, registry, run_attack
from percviz.attacks.base import AttackOutput
from percviz.attacks.bounds import Constraint, judge
from percviz.cli import main

#: Few iterations, so every attack runs on the tiny model in well under a second per variant.
FAST = {"steps": 3, "search_steps": 2, "cg_iters": 5, "subsets": 20}
#: Variants beyond defaults and presets that exercise other projections, norms and scopes.
EXTRA = {
    "pgd": [{"eps": 0.05, "step_size": 0.05, "random_start": True}],
    "pgd_l2": [{"eps": 0.5, "step_size": 2.0}],
    "gnm": [{"p": "1", "eps": 2.0}, {"p": "3", "eps": 0.5}],
    "balda_iter": [
        {"p": "1.5", "eps": 1.0, "dither": 0.5, "dither_schedule": "linear"},
        {"p": "1", "eps": 1.0},
    ],
    "deepfool": [{"p": "inf", "steps": 20}],
    "subset": [{"eps": 0.3, "subsets": 5, "subset_size": 3, "dither": 0.1}],
    "ppgd": [{"projection": "newton", "bound": 0.1}],
    "lpa": [{"projection": "newton", "bound": 0.1}],
    "pgap": [{"eps1": 0.02, "eps2": 0.05, "scope": "channel"}],
    "fpgap": [{"eps2": 0.02, "anchor": "original", "scope": "channel"}],
}


def _variants() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for attack_id, spec in registry().items():
        if spec.task != "classification":
            continue  # regression attacks run through their own template, on their own models
        for preset in [{}, *spec.presets.values(), *EXTRA.get(attack_id, [])]:
            if preset.get("distance_net", "self") != "self":
                continue  # external distance networks need weights this machine may not have
            fast = {k: v for k, v in FAST.items() if k in spec.param_names() and k not in preset}
            out.append((attack_id, {**preset, **fast}))
    return out


def _hard_bounded() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for attack_id, spec in registry().items():
        if spec.task != "classification":
            continue
        params = {"anchor": "original"} if "anchor" in spec.param_names() else {}
        values = spec.validate(params)
        if any(c.kind == "hard" and c.applies(values) for c in spec.constraints):
            out.append((attack_id, params))
    return out


def test_every_attack_declares_strength_iterations_and_constraints() -> None:
    for spec in registry().values():
        kinds = {p.name: p.kind for p in spec.params}
        assert spec.strength is not None, f"{spec.id} declares no strength parameter"
        assert kinds[spec.strength] in ("float", "int"), spec.id
        assert spec.constraints, f"{spec.id} declares no constraint (a soft one reports the distance)"
        loops = set(spec.iteration_params) | set(spec.cost_params)
        assert all(kinds[n] == "int" for n in loops), spec.id
        if "steps" in kinds:
            assert "steps" in spec.iteration_params, spec.id
        values = spec.validate({})
        applicable = [c for c in spec.constraints if c.applies(values)]
        assert applicable, f"{spec.id}: no constraint applies to its defaults"
        for c in applicable:
            assert c.kind in ("hard", "soft") and c.relation in ("<=", ">=")
            if c.kind == "hard":
                assert c.bound(values) is not None, f"{spec.id}: a hard constraint needs a limit"


def _undeclared_ints() -> list[tuple[str, str]]:
    return [
        (spec.id, p.name)
        for spec in registry().values()
        if spec.task == "classification"
        for p in spec.params
        if p.kind == "int" and p.name not in (*spec.iteration_params, *spec.cost_params)
    ]


@pytest.mark.parametrize(("attack_id", "name"), _undeclared_ints())
def test_undeclared_int_parameters_do_not_multiply_passes(tiny, photos32, attack_id: str, name: str) -> None:
    """An int parameter left out of ``iteration_params``/``cost_params`` must not raise the cost
    (it may lower it: larger subsets fool sooner and stop earlier)."""
    spec = get_attack(attack_id)
    p = spec.param(name)
    low = int(p.low or 1)
    high = min(int(p.high or low + 8), low + 8)
    fast = {k: v for k, v in FAST.items() if k in spec.param_names()}
    counts = [
        (r.forward_passes, r.backward_passes)
        for r in (run_attack(attack_id, tiny, photos32, {**fast, name: v}) for v in (low, high))
    ]
    assert counts[1][0] <= counts[0][0] and counts[1][1] <= counts[0][1], (attack_id, name, counts)


def test_register_refuses_undeclared_names() -> None:
    spec = get_attack("pgd")
    bad = dataclasses.replace(spec, id="pgd_bad_strength", strength="epsilon")
    with pytest.raises(ValueError, match="epsilon"):
        base.register(bad)
    bad = dataclasses.replace(
        spec, id="pgd_bad_bound", constraints=(Constraint(distance="l2", kind="hard", param="r"),)
    )
    with pytest.raises(ValueError, match="'r'"):
        base.register(bad)
    assert "pgd_bad_strength" not in registry() and "pgd_bad_bound" not in registry()


@pytest.mark.parametrize(("attack_id", "params"), _variants(), ids=lambda v: str(v))
def test_every_attack_stays_within_its_hard_bound(tiny, photos32, attack_id: str, params: dict) -> None:
    spec = get_attack(attack_id)
    result = run_attack(attack_id, tiny, photos32, params, seed=1)
    values = spec.validate(params)
    judged = [c.key(values) for c in spec.constraints if c.applies(values)]
    assert [b["distance"] for b in result.bounds] == judged
    for check in result.bounds:
        assert check["values"] == result.constraints[check["distance"]]
        if check["kind"] == "hard":
            assert all(check["within"]), (attack_id, params, check)
    assert result.within_bound.all()
    assert torch.equal(result.success, result.fooled & result.within_bound)
    assert set(result.violation) == set(judged)


def _far_output(ctx, x: torch.Tensor, labels: torch.Tensor, params: dict) -> AttackOutput:
    """Another photo of the batch: far outside every bound (and reported as if inside)."""
    return AttackOutput(x.roll(1, 0), constraints={"lpips_self": torch.zeros(x.shape[0])})


@pytest.mark.parametrize(("attack_id", "params"), _hard_bounded())
def test_over_budget_result_is_not_a_success(
    tiny, photos32, monkeypatch, attack_id: str, params: dict
) -> None:
    spec = get_attack(attack_id)
    monkeypatch.setitem(base._REGISTRY, attack_id, dataclasses.replace(spec, fn=_far_output))
    wrong = torch.ones(3, dtype=torch.long)  # the tiny model says 0 everywhere: all "fooled"
    result = run_attack(attack_id, tiny, photos32, params, labels=wrong)
    assert result.fooled.all()
    assert not result.within_bound.any() and not result.success.any()
    hard = [b for b in result.bounds if b["kind"] == "hard"]
    assert any(min(b["excess"]) > b["tolerance"] and not any(b["within"]) for b in hard)


def test_soft_bound_is_reported_but_never_fails(tiny, photos32, monkeypatch) -> None:
    spec = get_attack("fast_lpa")
    monkeypatch.setitem(base._REGISTRY, "fast_lpa", dataclasses.replace(spec, fn=_far_output))
    result = run_attack("fast_lpa", tiny, photos32, {"bound": 0.1}, labels=torch.ones(3, dtype=torch.long))
    (check,) = result.bounds
    assert check["kind"] == "soft" and check["distance"] == "lpips_self"
    assert min(check["values"]) > 0.1 and not any(check["within"])  # re-measured, not the reported 0
    assert result.success.all() and result.within_bound.all()
    assert min(result.violation["lpips_self"]) > 0


@pytest.mark.parametrize(("factor", "within"), [(1.0 + 1e-3, False), (1.0 + 1e-4, True)])
def test_tolerance_is_relative_to_the_budget(
    tiny, photos32, monkeypatch, factor: float, within: bool
) -> None:
    eps = 4 / 255

    def over(ctx, x, labels, params):
        sign = torch.where(torch.arange(x[0].numel()).view_as(x[0]) % 2 == 0, 1.0, -1.0)
        return AttackOutput(x + factor * eps * sign)

    monkeypatch.setitem(base._REGISTRY, "pgd", dataclasses.replace(get_attack("pgd"), fn=over))
    result = run_attack("pgd", tiny, photos32, {"eps": eps}, labels=torch.ones(3, dtype=torch.long))
    assert result.constraints["linf"][0] == pytest.approx(factor * eps, rel=1e-5)
    assert bool(result.within_bound.all()) is within and bool(result.success.all()) is within


def test_judge_relations() -> None:
    s2 = Constraint(
        distance="s2", kind="hard", relation=">=", param="eps2", limit=lambda p: 1 - p["eps2"] ** 2
    )
    out = judge(s2, {"eps2": 0.1}, torch.tensor([0.995, 0.98, float("nan")], dtype=torch.float64))
    assert out["limit"] == pytest.approx(0.99) and out["within"] == [True, False, False]
    assert out["excess"][0] == 0 and out["excess"][1] == pytest.approx(0.01)
    free = judge(Constraint(distance="l2", kind="soft"), {}, torch.tensor([3.0]))
    assert free["limit"] is None and free["within"] == [True]


def test_result_json_reports_the_bound(tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    assert main(["attack", "--image", "sample:coffee", "--attack", "fgsm", "--out", str(out)]) == 0
    report = json.loads((out / "result.json").read_text())
    assert report["within_bound"] is True and report["success"] == report["fooled"]
    (check,) = report["bounds"]
    assert check["distance"] == "linf" and check["kind"] == "hard" and check["within"]
    assert check["value"] <= check["limit"] + 1e-7

    spec = get_attack("fgsm")
    monkeypatch.setitem(base._REGISTRY, "fgsm", dataclasses.replace(spec, fn=_far_output_single))
    assert main(["attack", "--image", "sample:coffee", "--attack", "fgsm", "--out", str(out)]) == 0
    report = json.loads((out / "result.json").read_text())
    assert report["fooled"] and not report["within_bound"] and not report["success"]
    assert report["bounds"][0]["excess"] > 0.1


def _far_output_single(ctx, x: torch.Tensor, labels: torch.Tensor, params: dict) -> AttackOutput:
    """Flat grey: far outside a small L∞ budget (EfficientNet-Lite0 calls it another class)."""
    return AttackOutput(torch.full_like(x, 0.5))


def test_attacks_json_prints_the_registry(capsys) -> None:
    assert main(["attacks", "--json"]) == 0
    specs = {s["id"]: s for s in json.loads(capsys.readouterr().out)}
    assert set(specs) == set(registry())
    for attack_id, s in specs.items():
        spec = get_attack(attack_id)
        assert s["strength"] == spec.strength and s["source"] and s["formula"]
        assert s["iteration_params"] == list(spec.iteration_params)
        assert s["cost_params"] == list(spec.cost_params)
        assert s["constraints"] and all(c["kind"] in ("hard", "soft") for c in s["constraints"])
        for p in s["params"]:
            assert {"name", "kind", "default", "low", "high", "unit", "choices", "symbol"} <= set(p)
        assert set(s["presets"]) == set(spec.presets)
    assert specs["pgd"]["constraints"][0] == {
        "distance": "linf",
        "kind": "hard",
        "relation": "<=",
        "param": "eps",
        "limit": "eps",
        "tolerance": 1e-5,
        "when": {},
        "text": "‖x_adv − x‖∞ ≤ eps",
    }
    assert specs["fpgap"]["constraints"][0]["when"] == {"anchor": "original"}
    assert specs["gnm"]["params"][0]["default"] == "inf"
