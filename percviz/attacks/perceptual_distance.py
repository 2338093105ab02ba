"""The distance network of Laidlaw et al. 2021 §3 (φ: normalised, stacked activations) as the
perceptual attacks use it: :class:`DistanceNet` counts every pass on the attack context and, when
self-bounded, shares one forward between the logits and φ (an fx extractor per model);
:func:`measure_perceptual` re-measures the bound for the run template.
"""

from __future__ import annotations

import threading
import weakref
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from percviz.analysis.metrics import perceptual_features
from percviz.attacks.base import AttackContext
from percviz.attacks.bounds import current_memo
from percviz.errors import ParameterError
from percviz.models.layout import call_channels_last

if TYPE_CHECKING:
    from percviz.models import Classifier


DISTANCE_NETS = ("self", "alexnet", "vgg16", "resnet50")


# Table 4 (App. D): PPGD/LPA bounds externally bounded with AlexNet; self-bounded ~ half (Table 5).
ALEXNET_BOUNDS = {"small": 0.25, "medium": 0.5, "large": 1.0}
SELF_BOUNDS = {k: v / 2 for k, v in ALEXNET_BOUNDS.items()}
_JOINT: weakref.WeakKeyDictionary[nn.Module, nn.Module | None] = weakref.WeakKeyDictionary()
_JOINT_LOCK = threading.Lock()
_LOGITS = "__logits__"


def _joint_extractor(model: nn.Module) -> nn.Module | None:
    """An fx module returning the feature layers *and* the logits of ``model.net`` in one forward.

    Shares the parameters, registers no hooks (thread-safe); ``None`` when the net cannot be traced.
    """
    with _JOINT_LOCK:
        if model not in _JOINT:
            _JOINT[model] = _build_joint(model)
        return _JOINT[model]


def _build_joint(model: nn.Module) -> nn.Module | None:
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    try:
        classifier = cast("Classifier", model)
        net = classifier.net
        layers = tuple(classifier.spec.feature_layers)
        last = get_graph_node_names(net)[1][-1]
        nodes = {name: name for name in layers}
        nodes[last] = _LOGITS
        extractor = create_feature_extractor(net, return_nodes=nodes)
    except Exception:  # untraceable custom model: fall back to two forwards
        return None
    extractor.eval()
    extractor.requires_grad_(False)
    return extractor


class _Acts:
    """Adapter giving ``perceptual_features`` precomputed activations (the FeatureNet protocol)."""

    def __init__(self, acts: list[torch.Tensor]) -> None:
        self.acts = acts

    def features(self, _x: torch.Tensor) -> list[torch.Tensor]:
        return self.acts


class DistanceNet:
    """φ of Laidlaw et al. 2021 §3 for the bound, with every pass counted on the attack context.

    ``name='self'`` uses the attacked classifier (needs ``.features``); other names load that
    zoo model with :func:`percviz.models.load_model`, which raises ModelUnavailableError naming
    the missing weight file (propagated to the CLI / app as is).
    """

    def __init__(self, ctx: AttackContext, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.external = name != "self"
        if self.external:
            from percviz.models import load_model

            self.net: Any = load_model(name, ctx.device)
            self.joint = None
        else:
            if not hasattr(ctx.model, "features") or not hasattr(ctx.model, "spec"):
                raise ParameterError(
                    "distance_net=self needs a classifier with perceptual feature layers; "
                    "choose alexnet, vgg16 or resnet50."
                )
            self.net = ctx.model
            self.joint = _joint_extractor(ctx.model)

    @property
    def constraint_name(self) -> str:
        return f"lpips_{self.name}"

    @property
    def memo_kind(self) -> str:
        return f"phi_{self.name}"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x) (uncounted; callers count). Differentiable when ``x`` requires grad; without grad
        the value is kept for the template's bound re-check (:class:`~percviz.attacks.bounds.MeasureMemo`)."""
        out = call_channels_last(self.net, partial(perceptual_features, self.net), x)
        if not (x.requires_grad or out.requires_grad):
            self.ctx.memo.put(self.memo_kind, x, out)
        return out

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x) without gradient; one counted forward."""
        self.ctx.forward_passes += 1
        with torch.no_grad():
            return self.features(x)

    def logits_and_phi(self, xg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the classifier and φ(xg), both on xg's graph.

        Counted forwards: 1 when self-bounded (one shared pass; 2 if the net is untraceable),
        2 when externally bounded.
        """
        model = cast("Classifier", self.ctx.model)
        if self.joint is not None:
            joint = self.joint
            out = call_channels_last(joint, lambda z: joint(model.normalize(z)), xg)
            self.ctx.forward_passes += 1
            acts = [out[name] for name in model.spec.feature_layers]
            return out[_LOGITS], perceptual_features(_Acts(acts), xg)
        self.ctx.forward_passes += 2
        return call_channels_last(model, model, xg), self.features(xg)

    def backward_cost(self) -> int:
        """Backward passes one gradient through both f and φ counts (1 self, 2 external)."""
        return 1 + int(self.external or self.joint is None)


def measure_perceptual(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, params: Any) -> torch.Tensor:
    """``d(x_adv, x) = |φ(x_adv) − φ(x)|₂`` per image with φ of ``params['distance_net']`` (two
    forwards of the distance network, fewer where the attack already computed φ on the same
    pixels; a :class:`~percviz.attacks.bounds.Constraint` measure)."""
    name = params["distance_net"]
    if name == "self":
        net: Any = model
    else:
        from percviz.models import load_model

        net = load_model(name, x.device)
    memo = current_memo()

    def phi(z: torch.Tensor) -> torch.Tensor:
        seen = memo.get(f"phi_{name}", z) if memo is not None else None
        return seen if seen is not None else call_channels_last(net, partial(perceptual_features, net), z)

    return (phi(x_adv) - phi(x)).norm(dim=1)
