"""The admin in a real browser: headless Chromium logs in, opens a GPU's page and finds its chart."""
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from telemetry.models import Gpu
from tests.admin.cdp import Browser, chromium_path
from tests.api.conftest import GPU_UUID, load_sample

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
def browser(tmp_path):
    executable = chromium_path()
    if executable is None:
        pytest.fail("Chromium is not installed: run `make chromium` (part of `make test`)")
    session = Browser(executable, tmp_path / "profile")
    yield session
    session.close()


def test_admin_login_and_gpu_chart_in_chromium(live_server, browser):
    load_sample()
    get_user_model().objects.create_superuser("admin", "admin@example.com", "browser-test-password")
    gpu = Gpu.objects.get(uuid=GPU_UUID)
    page = f"/admin/telemetry/gpu/{gpu.pk}/change/"

    browser.navigate(f"{live_server.url}/admin/login/?next={page}")
    assert browser.evaluate("document.querySelector('#id_username') !== null")
    browser.submit_and_wait(
        "document.querySelector('#id_username').value = 'admin';"
        "document.querySelector('#id_password').value = 'browser-test-password';"
        "document.querySelector('#login-form').submit();"
    )
    assert browser.evaluate("location.pathname") == page
    assert GPU_UUID in browser.evaluate("document.body.innerText")
    # The chart is drawn: an SVG with one panel per metric, each with a mark, laid out with real size.
    assert browser.evaluate("document.querySelectorAll('svg#gpu-chart g.metric').length") == 10
    assert browser.evaluate("document.querySelectorAll('svg#gpu-chart circle').length") >= 10
    width = browser.evaluate("document.querySelector('svg#gpu-chart').getBoundingClientRect().width")
    assert width > 400
    # The admin is styled (its stylesheet loaded), and the page links to the GPU's readings.
    assert browser.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor") not in ("", "rgba(0, 0, 0, 0)")
    assert browser.evaluate("document.querySelector('#gpu-samples-link').href").endswith(f"gpu__id__exact={gpu.pk}")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "admin-gpu-chart.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
