"""W/eval/index.html in a real browser (headless Chromium through selenium): it loads without
console errors, every image shows, sorting by a column orders the rows by it, it says what it
scored, and the multi-set page links each set's gallery.

Needs Debian's `chromium` and `chromium-driver` and the pip package selenium (.ci/run and
`make test` install them). Without them the tests skip, except where CI is set: there they
fail.
"""

import os
import shutil
import tempfile

import numpy as np
from PIL import Image
import pytest

from pix2pix_jax import evaluation
import tiny_workdir


def _browser():
  """A headless Chromium driver, or a skip (a failure under CI) saying what is missing."""
  missing = [tool for tool in ("chromium", "chromedriver") if shutil.which(tool) is None]
  try:
    from selenium import webdriver  # pylint: disable=g-import-not-at-top
  except ImportError:
    missing.append("selenium (pip)")
  if missing:
    message = f"the browser test needs {', '.join(missing)}"
    if os.environ.get("CI"):
      pytest.fail(message + " (CI is set: .ci/run installs them)")
    pytest.skip(message)
  options = webdriver.ChromeOptions()
  options.binary_location = shutil.which("chromium")
  # No background networking: the machine's closed network refuses it, noisily.
  for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                   "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update",
                   "--disable-sync", "--allow-file-access-from-files",
                   f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
    options.add_argument(argument)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
  return webdriver.Chrome(options=options, service=service)


@pytest.fixture(name="browser", scope="module")
def _browser_fixture():
  driver = _browser()
  yield driver
  driver.quit()


@pytest.fixture(name="workdir", scope="module")
def _workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp("gallery")
  return tiny_workdir.make(str(root / "w"), str(root / "cache"))


def _open(browser, path):
  browser.get("file://" + str(path))
  errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
  assert not errors, errors


def _images_show(browser):
  images = browser.find_elements("tag name", "img")
  assert images
  for image in images:
    assert browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", image), (
            image.get_attribute("src"))


def test_gallery_loads_shows_every_image_and_sorts(browser, workdir, tmp_path):
  out = tmp_path / "eval"
  evaluation.evaluate_workdir(workdir, out_dir=str(out))
  _open(browser, out / "index.html")
  _images_show(browser)
  about = browser.find_element("id", "about").text
  for said in ("workdir", "checkpoint", "norm mode: running", "protocol: raindrop", "date"):
    assert said in about, about
  headers = [h.text for h in browser.find_elements("css selector", "#gallery th")]
  column = headers.index("gain_psnr_y")
  header = browser.find_elements("css selector", "#gallery th")[column]
  def values():
    return [float(row.find_elements("tag name", "td")[column].get_attribute("data-v"))
            for row in browser.find_elements("css selector", "#gallery tbody tr")]
  assert len(values()) == 4
  header.click()
  assert values() == sorted(values())
  header.click()
  assert values() == sorted(values(), reverse=True)


def test_multi_set_page_links_each_gallery(browser, workdir, tmp_path):
  sets = tmp_path / "test"
  rng = np.random.default_rng(0)
  for name, count in (("Rain100H", 2), ("Rain100L", 1)):
    for kind in ("input", "target"):
      os.makedirs(sets / name / kind)
      for i in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 36, 3), dtype=np.uint8)).save(
            sets / name / kind / f"{i}.png")
  out = tmp_path / "eval"
  evaluation.evaluate_workdir(workdir, overrides={"eval.sets": "all",
                                                  "eval.sets_dir": str(sets)},
                              out_dir=str(out))
  _open(browser, out / "index.html")
  rows = browser.find_elements("css selector", "#sets tr")
  assert [r.find_elements("tag name", "td")[0].text for r in rows[1:]] == [
      "Rain100H", "Rain100L", "average"]
  for name in ("Rain100H", "Rain100L"):
    _open(browser, out / "index.html")
    browser.find_element("link text", name).click()
    assert browser.current_url.endswith(f"{name}/index.html")
    assert f"test set: {name}" in browser.find_element("id", "about").text
    _images_show(browser)
