"""The admin in a real browser: headless Chromium logs in, opens a GPU's page and finds its chart.

Driven by Selenium's WebDriver through Debian's chromedriver (`make chromium` installs both packages).
The driver's path is given explicitly, so Selenium Manager never runs (it would try to download one).
"""
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from telemetry.models import Gpu
from tests.api.conftest import GPU_UUID, load_sample

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TIMEOUT = 30


@pytest.fixture
def driver(tmp_path):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run `make chromium` (part of `make test`)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--hide-scrollbars", "--window-size=1400,1600",
                     f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")),
                               options=options)
    session.set_page_load_timeout(TIMEOUT)
    yield session
    session.quit()


def test_admin_login_and_gpu_chart_in_chromium(live_server, driver):
    load_sample()
    get_user_model().objects.create_superuser("admin", "admin@example.com", "browser-test-password")
    gpu = Gpu.objects.get(uuid=GPU_UUID)
    page = f"/admin/telemetry/gpu/{gpu.pk}/change/"
    wait = WebDriverWait(driver, TIMEOUT)

    driver.get(f"{live_server.url}/admin/login/?next={page}")
    form = wait.until(EC.presence_of_element_located((By.ID, "login-form")), "no login form")
    driver.find_element(By.ID, "id_username").send_keys("admin")
    driver.find_element(By.ID, "id_password").send_keys("browser-test-password")
    form.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The login page goes away and the GPU's page (the `next`) loads in its place.
    wait.until(EC.staleness_of(form), "the login form was not submitted")
    wait.until(lambda d: d.execute_script("return location.pathname") == page,
               f"login did not lead to {page}")
    chart = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "svg#gpu-chart")),
                       "no visible svg#gpu-chart on the GPU's page")

    assert driver.execute_script("return location.pathname") == page
    assert GPU_UUID in driver.find_element(By.TAG_NAME, "body").text
    # The chart is drawn: an SVG with one panel per metric, each with a mark, laid out with real size.
    assert len(chart.find_elements(By.CSS_SELECTOR, "g.metric")) == 10
    assert len(chart.find_elements(By.CSS_SELECTOR, "circle")) >= 10
    width = driver.execute_script("return arguments[0].getBoundingClientRect().width", chart)
    assert width > 400
    # The admin is styled (its stylesheet loaded), and the page links to the GPU's readings.
    header = driver.find_element(By.ID, "header")
    assert header.value_of_css_property("background-color") not in ("", "rgba(0, 0, 0, 0)", "transparent")
    assert driver.find_element(By.ID, "gpu-samples-link").get_attribute("href").endswith(f"gpu__id__exact={gpu.pk}")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "admin-gpu-chart.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
