"""ONNX models as torch networks: read the graph, check its one image input, convert it with
onnx2torch — lowering the opset with ONNX's own ``version_converter`` when a current operator
version has no converter, and then checking the converted net against ONNX's reference evaluator.
Used by :mod:`percviz.models.custom` for ``file:PATH`` references whose content is ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from percviz.errors import ModelFileError, one_line


def read_onnx(path: Path) -> tuple[nn.Module, str, int | None]:
    """``(net, source, input size or None)`` of an ONNX file: one N×3×H×W image input, converted by
    onnx2torch (:func:`convert_onnx`). Raises :class:`ModelFileError` with one sentence."""
    import onnx

    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # e.g. external data outside the model's folder, or missing
        raise ModelFileError(f"ONNX model '{path.name}' cannot be read ({one_line(exc)}).") from None
    size = None
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if len(inputs) != 1:
        raise ModelFileError(
            f"ONNX model '{path.name}' has {len(inputs)} inputs; percviz needs one image input."
        )
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) == 4:
        if dims[1] not in (0, 3):
            raise ModelFileError(f"ONNX model '{path.name}' takes {dims[1]} channels; percviz needs N×3×H×W.")
        if dims[2] > 0 and dims[2] == dims[3]:
            size = dims[2]
    net, how = convert_onnx(proto, path.name, size or 224)
    return net, f"ONNX file {path} (converted by onnx2torch{how})", size


#: The oldest opset :func:`convert_onnx` lowers a model to (onnx2torch covers opsets 9–16 fully).
OLDEST_OPSET = 13


def convert_onnx(proto: Any, name: str, size: int) -> tuple[nn.Module, str]:
    """``(net, how)``: ``proto`` converted to torch by onnx2torch.

    onnx2torch lacks converters for some operator versions of current opsets (``torch.onnx.export``
    writes opset 20, e.g. Constant-19 and ReduceMean-18). Such a model is first lowered with ONNX's
    own ``version_converter`` to the newest opset onnx2torch converts, and the converted net's
    output on a seeded ``1×3×size×size`` input is checked against ONNX's reference evaluator on the
    original graph. ``how`` says what was done (empty when the model converted as it was).
    """
    from onnx import version_converter

    try:
        from onnx2torch import convert
    except ImportError:
        raise ModelFileError("ONNX models need the onnx2torch package: pip install onnx2torch.") from None
    try:
        return convert(proto), ""
    except NotImplementedError as exc:
        missing = one_line(exc)
    except Exception as exc:
        raise ModelFileError(f"ONNX model '{name}' cannot be converted to torch ({one_line(exc)}).") from None
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    for target in range(opset - 1, OLDEST_OPSET - 1, -1):
        try:
            net = convert(version_converter.convert_version(proto, target))
        except Exception:
            continue
        return net, f" after lowering opset {opset} to {target}; " + _reference_check(proto, net, name, size)
    raise ModelFileError(
        f"ONNX model '{name}' uses an operator that onnx2torch cannot convert ({missing}), also after "
        f"lowering its opset {opset} as far as {OLDEST_OPSET}."
    )


def _reference_check(proto: Any, net: nn.Module, name: str, size: int) -> str:
    """Compare ``net`` with ONNX's reference evaluator on one seeded input; refuse a mismatch."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    try:
        (ref, *_) = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})
    except Exception as exc:
        return f"not checked against ONNX's reference evaluator ({one_line(exc, 80)})"
    with torch.no_grad():
        out = net(x)
    ref_t = torch.from_numpy(np.asarray(ref, dtype=np.float32))
    if not isinstance(out, torch.Tensor) or out.shape != ref_t.shape:
        raise ModelFileError(f"ONNX model '{name}': its lowered opset changes the output's shape.")
    diff = float((out.float() - ref_t).abs().max())
    scale = float(ref_t.abs().max()) or 1.0
    if not diff <= 1e-4 * scale + 1e-5:
        raise ModelFileError(
            f"ONNX model '{name}': lowered to an older opset it computes something else (max |Δ| "
            f"{diff:.3g} against ONNX's reference evaluator), so percviz does not use it."
        )
    return f"output within {diff:.1e} of ONNX's reference evaluator"
