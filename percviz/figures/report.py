"""The PNG plots ``percviz evaluate`` writes beside its tables (matplotlib object API, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from percviz.evaluation.plan import run_label

_QUALITY_AXES = (
    ("fooling_rate", "fooling rate"),
    ("mean_ssim", "mean SSIM"),
    ("mean_psnr", "mean PSNR (dB)"),
)


def plot_report(
    out: str | Path,
    summaries: Sequence[Mapping[str, Any]],
    sweep_params: Sequence[str] = (),
) -> list[Path]:
    """PNG plots: fooling rate / mean SSIM / mean PSNR vs each swept parameter (one line per
    attack), mean SSIM vs fooling rate (Pochimireddy et al. 2021 Fig. 6), and P(D) per group
    (Zhang et al. 2020 Fig. 5–6). Returns the written paths."""
    out = Path(out)
    attacks = list(dict.fromkeys(str(s["attack"]) for s in summaries))
    written: list[Path] = []
    for pname in sweep_params:
        for key, ylabel in _QUALITY_AXES:
            fig, ax = _axes()
            for attack in attacks:
                pts = sorted(
                    (float(s["params"][pname]), s[key])
                    for s in summaries
                    if s["attack"] == attack
                    and pname in s["params"]
                    and s.get(key) is not None
                    and _is_number(s["params"][pname])
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=attack)
            written.append(_save(fig, ax, pname, ylabel, out / f"{key}_vs_{pname}.png"))
    fig, ax = _axes()
    for attack in attacks:
        pts = sorted(
            (s["fooling_rate"], s["mean_ssim"])
            for s in summaries
            if s["attack"] == attack and s.get("mean_ssim") is not None
        )
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=attack)
    written.append(_save(fig, ax, "fooling rate", "mean SSIM", out / "ssim_vs_fooling_rate.png"))
    fig, ax = _axes()
    for s in summaries:
        oc = s.get("operating_characteristic") or {}
        if oc.get("d"):
            ax.step(oc["d"], oc["p"], where="post", label=run_label(str(s["attack"]), s.get("params") or {}))
    ax.set_ylim(0, 1.02)
    path = out / "operating_characteristic.png"
    written.append(_save(fig, ax, "L2 distortion D ([0,1] units)", "P(D)", path, legend=len(summaries) <= 12))
    return written


def _axes() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(5, 3.5), dpi=120)
    return fig, fig.subplots()


def _save(fig: Figure, ax: Axes, xlabel: str, ylabel: str, path: Path, *, legend: bool = True) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
