"""The LPIPS-ball projections (percviz.attacks.solvers.projections, Laidlaw et al. 2021 App. A.4):
bisection along the segment and Newton's method land inside the bound, with every pass counted.
"""

from __future__ import annotations

import torch
from conftest import LPIPS_TOL as TOL
from conftest import PassCounter as Counter
from conftest import lpips_distance as _distance

from percviz.analysis.metrics import perceptual_features
from percviz.attacks.solvers.projections import bisection, newton


def test_projections_land_inside_and_bisection_stays_on_segment(tiny, photos32):
    x = photos32
    far = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    phi = lambda z: perceptual_features(tiny, z)  # noqa: E731
    phi_x = phi(x)
    bound = 0.05
    c = Counter()
    pb = bisection(phi, x, far, phi_x, bound, 10, c)
    assert c.forward_passes == 11 and c.backward_passes == 0
    assert pb.was_outside.all() and (_distance(tiny, x, pb.x) <= bound + TOL).all()
    alpha = (pb.x - x).flatten(1).norm(dim=1) / (far - x).flatten(1).norm(dim=1)
    assert torch.allclose(pb.x, x + alpha.view(-1, 1, 1, 1) * (far - x), atol=1e-6)
    assert (pb.distance > 0.9 * bound).all()  # 10 bisections get close to the boundary
    pn = newton(phi, x, far, phi_x, bound, 0.01, Counter())
    assert (_distance(tiny, x, pn.x) <= bound + TOL).all()
    inside = bisection(phi, x, pb.x, phi_x, bound, 3, Counter())
    assert torch.equal(inside.x, pb.x)  # already inside: unchanged
