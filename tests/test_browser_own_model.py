"""Your own model in Explore, in a real browser (Chromium): upload a scripted TorchScript classifier,
run PGD, and see a verdict and every view that the model can give, the model called by its file
name and no path of the server anywhere on the page; the views a model cannot give say why in
their own place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _browser import CHROMIUM, chromium_page, click_until, idle, streamlit_server, verdict_with

pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed"),
]
SHOTS = Path("/tmp/percviz-own-model")


class _Flat(torch.nn.Module):
    """A small classifier written by a user: convolutions, then ``flatten`` and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4)
        )
        self.head = torch.nn.Linear(8 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with streamlit_server(SHOTS / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("own") / "my_flat_net.pt"
    torch.jit.script(_Flat().eval()).save(str(path))
    return path


def _page_text(page: Any) -> str:
    return str(page.evaluate("() => document.body.innerText + ' ' + location.href"))


def test_an_uploaded_torchscript_classifier_runs_pgd_in_explore(server: str, scripted: Path) -> None:
    with chromium_page() as page:
        page.goto(f"{server}/Explore?attack=pgd&image=chelsea&p_steps=3")
        page.get_by_role("button", name="Run attack").wait_for()
        idle(page)
        sidebar = "document.querySelector('[data-testid=\"stSidebar\"]')"
        click_until(
            page,
            page.get_by_text("Your model", exact=True),
            f"() => {sidebar}.innerText.includes('Path on this machine')",
        )
        click_until(
            page,
            page.get_by_text("Upload", exact=True).first,
            f"() => {sidebar}.querySelector('input[type=\"file\"]') !== null",
        )
        page.locator('[data-testid="stSidebar"] input[type="file"]').first.set_input_files(str(scripted))
        page.get_by_text("my_flat_net.pt").first.wait_for(timeout=120_000)
        started = (
            "() => { const v = document.querySelector('.pv-verdict');"
            " return (v && v.innerText.includes('· PGD')) ||"
            " document.querySelector('[data-testid=\"stProgress\"]') !== null; }"
        )
        click_until(page, page.get_by_role("button", name="Run attack"), started)
        verdict_with(page, "· PGD")
        idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        for name in ("SSIM maps", "Difference", "Magnification", "GradCAM++", "Noise vs CAM"):
            page.get_by_role("tab", name=name).click()
            idle(page)
            assert page.locator('[data-testid="stException"]').count() == 0, name
            if name in ("GradCAM++", "Noise vs CAM"):  # TorchScript hides its layers: said in place
                page.get_by_text(
                    f"{name} is not available for this result. No GradCAM++ for model"
                ).wait_for()
                page.screenshot(path=str(SHOTS / "own-model-no-cam.png"))
            else:
                page.locator('[role="tabpanel"] .js-plotly-plot .main-svg').first.wait_for()
        page.get_by_text("No figure download: No GradCAM++ for model").first.wait_for()
        page.screenshot(path=str(SHOTS / "own-model-pgd.png"))
        text = _page_text(page)
        uploads = str(Path.home())
        assert "/tmp/" not in text and uploads not in text and ".cache" not in text, text[:2000]
        assert "my_flat_net.pt" in text
