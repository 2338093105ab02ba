"""Ours vs peer libraries on one model, the same photos, budget and steps, interleaved in one run.

    bash benchmarks/install_peers.sh                 # adv-lib and perceptual-advex, --no-deps
    python benchmarks/peers.py [--size 224] [--batches 1,8] [--rounds 3] [--slow]

Each row runs its contenders round robin (``rounds`` times, medians), so load on the machine hits
all of them alike, and judges every output the same way here: success (the model's prediction on
the output differs from the label, and for bounded attacks the output is within the bound) and
distortion (L∞, L2, SSIM, or the self-bounded perceptual distance). Our time is end to end: the
template's validation, the attack, its final classification and its re-measured constraints;
a peer's time is its attack plus the one forward that tells its success.

Rows (a missing peer becomes ``"peer not installed"``, never a failure):

- ``pgd_linf`` — PGD-L∞ (Madry et al. 2018): torchattacks ``PGD`` and adv_lib ``pgd_linf``;
- ``cw_l2`` — Carlini–Wagner L2 with its binary search on c: adv_lib ``carlini_wagner_l2``;
- ``deepfool`` — ours restricts to the top-k classes; adv_lib ``df`` and torchattacks ``DeepFool``
  take every class's gradient (999 backward passes per step), so they run only with ``--slow``;
- ``ssim`` — time to a success and the SSIM reached: FPGAP and PGAP (Pochimireddy et al.) vs
  adv_lib's ALMA with ``distance="ssim"``, all with the same number of steps;
- ``ppgd``, ``lpa``, ``fast_lpa`` — Laidlaw et al. 2021 self-bounded on the same classifier vs
  perceptual-advex's ``PerceptualPGDAttack``, ``LagrangePerceptualAttack``,
  ``FastLagrangePerceptualAttack``; reported per step (steps counted for both, since
  perceptual-advex's LPA stops early).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from percviz.analysis.metrics import perceptual_distance, perturbation_norms, ssim  # noqa: E402
from percviz.attacks import run_attack  # noqa: E402
from percviz.images import fit_to_model, load_sample, to_tensor  # noqa: E402
from percviz.models import load_model  # noqa: E402

NOT_INSTALLED = "peer not installed"
PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "motorcycle", "china", "flower")
EPS, ALPHA = 4 / 255, 1 / 255
PERCEPTUAL_BOUND = 0.25  # self-bounded "medium" (Laidlaw et al. 2021, App. D: half of AlexNet's 0.5)


def photos(size: int, n: int) -> torch.Tensor:
    """``n×3×size×size`` batch of the bundled photos (cycled), in [0, 1]."""
    names = [PHOTOS[i % len(PHOTOS)] for i in range(n)]
    return torch.cat([to_tensor(fit_to_model(load_sample(name).pixels, size)) for name in names])


# --------------------------------------------------------------------------- peers and their shims


class _AnyName(types.ModuleType):
    """A stand-in module: every attribute is a dummy class (``DATASETS``: an empty dict)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value: Any = {} if name == "DATASETS" else type(name, (), {})
        setattr(self, name, value)
        return value


def _stub(name: str) -> None:
    """Register a stand-in for ``name`` (and its parents) when the real one is not importable."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        full = ".".join(parts[:i])
        if full in sys.modules:
            continue
        try:
            if importlib.util.find_spec(full) is not None:
                continue
        except (ImportError, ValueError):
            pass
        module = _AnyName(full)
        module.__path__ = []  # a package, so submodules resolve
        sys.modules[full] = module
        if i > 1:
            setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], module)


def load_adv_lib() -> Any | None:
    """``adv_lib.attacks`` (visdom, used only by its optional logger, stubbed if absent), or None."""
    if importlib.util.find_spec("adv_lib") is None:
        return None
    _stub("visdom")
    return importlib.import_module("adv_lib.attacks")


def load_perceptual_advex() -> tuple[Any, Any] | None:
    """``(perceptual_attacks, models)`` of perceptual-advex with its training-only imports shimmed."""
    if importlib.util.find_spec("perceptual_advex") is None:
        return None
    import torchvision.models

    if "torchvision.models.utils" not in sys.modules:
        utils = types.ModuleType("torchvision.models.utils")
        utils.load_state_dict_from_url = torch.hub.load_state_dict_from_url  # type: ignore[attr-defined]
        sys.modules["torchvision.models.utils"] = utils
        torchvision.models.utils = utils  # type: ignore[attr-defined]
    for name in (
        "robustness.cifar_models.resnet",
        "robustness.datasets",
        "robustness.data_augmentation",
        "robustness.model_utils",
        "robustness.attacker",
        "advex_uar.common.pyt_common",
    ):
        _stub(name)
    attacks = importlib.import_module("perceptual_advex.perceptual_attacks")
    return attacks, importlib.import_module("perceptual_advex.models")


def load_torchattacks() -> Any | None:
    if importlib.util.find_spec("torchattacks") is None:
        return None
    return importlib.import_module("torchattacks")


def self_bounded_feature_model(pa_models: Any, classifier: torch.nn.Module) -> torch.nn.Module:
    """perceptual-advex's ``FeatureModel`` over our classifier: the same feature layers, and the
    features and logits from one forward (as our self-bounded attacks do), counting those calls."""
    from percviz.attacks.perceptual_distance import _LOGITS, _joint_extractor

    class PercvizFeatureModel(pa_models.FeatureModel):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = classifier
            self.joint = _joint_extractor(classifier)
            self.steps = 0

        def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(self.model.features(x))

        def features_logits(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
            self.steps += 1
            out = self.joint(self.model.normalize(x))
            return tuple(out[n] for n in self.model.spec.feature_layers), out[_LOGITS]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

    return PercvizFeatureModel()


# --------------------------------------------------------------------------- measurement


@dataclass
class Outcome:
    """One contender's output: the adversarial batch and, where known, the steps it ran."""

    x_adv: torch.Tensor
    steps: int | None = None


Runner = Callable[[], Outcome]


def interleaved(contenders: dict[str, Runner], rounds: int) -> dict[str, tuple[float, Outcome]]:
    """Round robin over the contenders (after one warm-up round); median seconds and last output."""
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    last: dict[str, Outcome] = {}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            last[name] = run()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), last[name]) for name in contenders}


def _median(values: torch.Tensor) -> float | None:
    return float(values.median()) if values.numel() else None


def judge(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    out: Outcome,
    *,
    linf_bound: float | None = None,
    perceptual_bound: float | None = None,
) -> dict[str, Any]:
    """Success and distortion of one output, measured the same way for every contender.

    Medians of the distortions are over the successful images (over all when none succeeded).
    """
    x_adv = out.x_adv.detach().clamp(0.0, 1.0)
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != labels
        norms = perturbation_norms(x, x_adv)
        values = {"linf": norms["linf"].float(), "l2": norms["l2"].float(), "ssim": ssim(x, x_adv)}
        within = torch.ones_like(fooled)
        if linf_bound is not None:
            within = values["linf"] <= linf_bound + 1e-6
        if perceptual_bound is not None:
            values["lpips_self"] = perceptual_distance(model, x, x_adv)
            within = values["lpips_self"] <= perceptual_bound + 1e-5
    success = fooled & within
    pick = success if bool(success.any()) else torch.ones_like(success)
    report: dict[str, Any] = {
        "success": float(success.float().mean()),
        "fooled": float(fooled.float().mean()),
    }
    report.update({f"median_{k}": _median(v[pick]) for k, v in values.items()})
    if out.steps is not None:
        report["steps"] = out.steps
    return report


def ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, params: dict) -> Runner:
    def run() -> Outcome:
        res = run_attack(attack, model, x, params, labels=y)
        return Outcome(res.x_adv, len(res.history))

    return run


def peer(model: torch.nn.Module, attack: Callable[[], torch.Tensor]) -> Runner:
    """A peer's attack followed by the forward that tells its success (what ours includes)."""

    def run() -> Outcome:
        x_adv = attack()
        with torch.no_grad():
            model(x_adv).argmax(1)
        return Outcome(x_adv.detach())

    return run


# --------------------------------------------------------------------------- rows


@dataclass
class Setting:
    model: torch.nn.Module
    x: torch.Tensor
    labels: torch.Tensor
    rounds: int
    slow: bool
    steps: int


def row_pgd(s: Setting) -> dict[str, Any]:
    m, x, y, steps = s.model, s.x, s.labels, s.steps
    contenders = {"percviz": ours(m, x, y, "pgd", {"eps": EPS, "step_size": ALPHA, "steps": steps})}
    missing: dict[str, str] = {}
    ta = load_torchattacks()
    if ta is None:
        missing["torchattacks"] = NOT_INSTALLED
    else:
        attack = ta.PGD(m, eps=EPS, alpha=ALPHA, steps=steps, random_start=False)
        contenders["torchattacks"] = peer(m, lambda: attack(x, y))
    al = load_adv_lib()
    if al is None:
        missing["adv_lib"] = NOT_INSTALLED
    else:
        contenders["adv_lib"] = peer(
            m,
            lambda: al.pgd_linf(
                m, x, y, ε=EPS, steps=steps, random_init=False, restarts=1, absolute_step_size=ALPHA
            ),
        )
    return _finish(s, contenders, missing, {"eps": EPS, "step_size": ALPHA, "steps": steps}, linf_bound=EPS)


def row_cw(s: Setting, steps: int, search: int, abort_early: bool = False) -> dict[str, Any]:
    """C&W-L2 with binary search; ``abort_early``: ours with Carlini & Wagner's released-code rule,
    which adv_lib applies by default (a round stops when its loss has not fallen over a tenth of
    its steps) — the same rule on both sides, so time is compared at the L2 each reaches."""
    m, x, y = s.model, s.x, s.labels
    params = {"c": 1.0, "steps": steps, "search_steps": search, "step_size": 0.01}
    if abort_early:
        params["abort_early"] = True
    contenders = {"percviz": ours(m, x, y, "cw_l2", params)}
    missing: dict[str, str] = {}
    al = load_adv_lib()
    if al is None:
        missing["adv_lib"] = NOT_INSTALLED
    else:
        contenders["adv_lib"] = peer(
            m,
            lambda: al.carlini_wagner_l2(
                m,
                x,
                y,
                initial_const=1.0,
                binary_search_steps=search,
                max_iterations=steps,
                learning_rate=0.01,
            ),
        )
    return _finish(s, contenders, missing, params)


def row_deepfool(s: Setting) -> dict[str, Any]:
    m, x, y = s.model, s.x, s.labels
    contenders = {"percviz": ours(m, x, y, "deepfool", {"steps": 50, "overshoot": 0.02, "candidates": 10})}
    missing: dict[str, str] = {}
    al, ta = load_adv_lib(), load_torchattacks()
    slow = "not run: takes every class's gradient (999 backward passes per step); pass --slow"
    if al is None:
        missing["adv_lib"] = NOT_INSTALLED
    elif not s.slow:
        missing["adv_lib"] = slow
    else:
        contenders["adv_lib"] = peer(m, lambda: al.df(m, x, y, steps=50, overshoot=0.02))
    if ta is None:
        missing["torchattacks"] = NOT_INSTALLED
    elif not s.slow:
        missing["torchattacks"] = slow
    else:
        attack = ta.DeepFool(m, steps=50, overshoot=0.02)
        contenders["torchattacks"] = peer(m, lambda: attack(x, y))
    return _finish(s, contenders, missing, {"steps": 50, "overshoot": 0.02, "candidates": 10})


def row_ssim(s: Setting) -> dict[str, Any]:
    m, x, y, steps = s.model, s.x, s.labels, s.steps
    contenders = {
        "percviz_fpgap": ours(m, x, y, "fpgap", {"steps": steps}),
        "percviz_pgap": ours(m, x, y, "pgap", {"steps": steps}),
    }
    missing: dict[str, str] = {}
    al = load_adv_lib()
    if al is None:
        missing["adv_lib_alma_ssim"] = NOT_INSTALLED
    else:
        contenders["adv_lib_alma_ssim"] = peer(m, lambda: al.alma(m, x, y, distance="ssim", num_steps=steps))
    return _finish(s, contenders, missing, {"steps": steps})


PA_CLASSES = {
    "ppgd": "PerceptualPGDAttack",
    "lpa": "LagrangePerceptualAttack",
    "fast_lpa": "FastLagrangePerceptualAttack",
}


def row_perceptual(s: Setting, attack: str, steps: int, search: int) -> dict[str, Any]:
    m, x, y = s.model, s.x, s.labels
    params: dict[str, Any] = {"bound": PERCEPTUAL_BOUND, "steps": steps}
    if attack == "lpa":
        params["search_steps"] = search
    contenders = {"percviz": ours(m, x, y, attack, params)}
    if attack == "ppgd":  # the released code's CG stopping rule, for a comparison at equal rules
        contenders["percviz_residual"] = ours(m, x, y, attack, {**params, "cg_stop": "residual"})
    missing: dict[str, str] = {}
    pa = load_perceptual_advex()
    if pa is None:
        missing["perceptual_advex"] = NOT_INSTALLED
    else:
        attacks, models = pa
        fm = self_bounded_feature_model(models, m)
        cls = getattr(attacks, PA_CLASSES[attack])
        kwargs: dict[str, Any] = {"bound": PERCEPTUAL_BOUND, "num_iterations": steps, "lpips_model": "self"}
        if attack == "ppgd":
            kwargs.update(cg_iterations=5, h=1e-3, kappa=1, projection="bisection")
        elif attack == "lpa":
            kwargs.update(binary_steps=search, h=0.1, kappa=1, projection="bisection")
        else:
            kwargs.update(lam=10, h=0.1, projection="none")
        theirs = cls(fm, **kwargs)

        def run() -> Outcome:
            fm.steps = 0
            out = peer(m, lambda: theirs(x, y))()
            return Outcome(out.x_adv, fm.steps)

        contenders["perceptual_advex"] = run
    bound = None if attack == "fast_lpa" else PERCEPTUAL_BOUND
    row = _finish(s, contenders, missing, params, perceptual_bound=bound)
    for entry in row["contenders"].values():
        entry["s_per_step"] = entry["seconds"] / max(1, entry.get("steps") or 1)
    return row


def _finish(
    s: Setting,
    contenders: dict[str, Runner],
    missing: dict[str, str],
    params: dict[str, Any],
    **bounds: float | None,
) -> dict[str, Any]:
    measured = interleaved(contenders, s.rounds)
    entries = {
        name: {"seconds": seconds, **judge(s.model, s.x, s.labels, out, **bounds)}
        for name, (seconds, out) in measured.items()
    }
    return {"batch": int(s.x.shape[0]), "params": params, "contenders": entries, "missing": missing}


# --------------------------------------------------------------------------- summary ratios


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def summary(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ratios of each row (ours over the peer) with both sides' success and distortion."""
    out: dict[str, Any] = {}
    for key, row in rows.items():
        if "error" in row:
            out[key] = {"error": row["error"]}
            continue
        c = row["contenders"]
        ours_names = [n for n in c if n.startswith("percviz")]
        peers = {n: v for n, v in c.items() if not n.startswith("percviz")}
        per_step = "s_per_step" in next(iter(c.values()))
        field = "s_per_step" if per_step else "seconds"
        entry: dict[str, Any] = {"measure": field, "missing": row["missing"]}
        for o in ours_names:
            for p, pv in peers.items():
                entry[f"{o}_over_{p}"] = _ratio(c[o][field], pv[field])
            if peers:
                fastest = min(peers, key=lambda p: peers[p][field])
                entry[f"{o}_over_fastest_peer"] = _ratio(c[o][field], peers[fastest][field])
                entry["fastest_peer"] = fastest
        entry["quality"] = {
            n: {k: v for k, v in e.items() if k in ("success", "median_linf", "median_l2", "median_ssim",
                                                     "median_lpips_self", "steps")}
            for n, e in c.items()
        }  # fmt: skip
        entry.update(_target(key.partition("@")[0], entry))
        out[key] = entry
    return out


#: The issue's targets, as (field of the summary entry, largest ratio allowed).
TARGETS: dict[str, tuple[str, float]] = {
    "pgd_linf": ("percviz_over_fastest_peer", 0.95),
    "cw_l2_abort": ("percviz_over_adv_lib", 1.0),
    "ppgd": ("percviz_over_perceptual_advex", 0.8),
}


def _target(row: str, entry: dict[str, Any]) -> dict[str, Any]:
    """``target`` (the ratio allowed) and ``met``: the time ratio within it, and — for C&W — the
    median L2 within 1.05× the peer's at equal success (the quality the time was bought with)."""
    if row not in TARGETS:
        return {}
    field, limit = TARGETS[row]
    ratio = entry.get(field)
    met = ratio is not None and ratio <= limit
    quality = entry["quality"]
    if row == "cw_l2_abort" and "adv_lib" in quality:
        ours_q, peer_q = quality["percviz"], quality["adv_lib"]
        met = met and ours_q["median_l2"] <= 1.05 * peer_q["median_l2"]
        met = met and ours_q["success"] >= peer_q["success"]
    return {"target": f"{field} <= {limit}", "met": met}


def row_jobs(s: Setting) -> dict[str, Callable[[], dict[str, Any]]]:
    """Every row for one setting; the expensive attacks run fewer steps (the same for all sides)."""
    steps = s.steps
    return {
        "pgd_linf": partial(row_pgd, s),
        "cw_l2": partial(row_cw, s, max(10, 2 * steps), 2),
        "cw_l2_abort": partial(row_cw, s, 10 * steps, 5, True),  # c = 1, 100 steps, 5 rounds at steps=10
        "deepfool": partial(row_deepfool, s),
        "ssim": partial(row_ssim, s),
        "ppgd": partial(row_perceptual, s, "ppgd", max(1, steps // 5), 1),
        "lpa": partial(row_perceptual, s, "lpa", steps, 1),
        "fast_lpa": partial(row_perceptual, s, "fast_lpa", steps, 1),
    }


def run_rows(
    size: int, batches: list[int], rounds: int, slow: bool, steps: int = 10, only: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Every row at every batch size (``key = row@batch``); a row that fails reports its error."""
    model = load_model("efficientnet_lite0", "cpu")
    rows: dict[str, dict[str, Any]] = {}
    for batch in batches:
        x = photos(size, batch)
        with torch.no_grad():
            labels = model(x).argmax(1)
        s = Setting(model, x, labels, rounds, slow, steps)
        jobs = row_jobs(s)
        for name, job in jobs.items():
            if only is not None and name not in only:
                continue
            start = time.perf_counter()
            try:
                rows[f"{name}@{batch}"] = job()
            except Exception as exc:  # report, do not hide
                rows[f"{name}@{batch}"] = {"error": f"{type(exc).__name__}: {exc}"}
            model.train(False)  # a peer may toggle modes; ours refuses train() anyway
            print(f"[{name}@{batch}: {time.perf_counter() - start:.1f} s]", file=sys.stderr)
            print(f"{name}@{batch}", json.dumps(_strict(rows[f"{name}@{batch}"])), flush=True)
    return rows


def _strict(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rows", default=None, help="comma-separated rows (default: all)")
    ap.add_argument("--slow", action="store_true", help="also run the all-class DeepFool peers")
    args = ap.parse_args(argv)
    only = set(args.rows.split(",")) if args.rows else None
    rows = run_rows(
        args.size, [int(b) for b in args.batches.split(",")], args.rounds, args.slow, args.steps, only
    )
    print(json.dumps(_strict({"peers": summary(rows)})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
