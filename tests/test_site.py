"""The built website in a real headless browser (DESIGN.md, "Tests"): every page of ``_toc.yml`` loads, its
images have non-zero size, its math is typeset by the MathJax served from the site itself, it states in one
line which edition it belongs to, and the browser console stays free of errors.

The site is ``$BOOK_SITE`` (default ``_build/smoke/html``, relative to the repository root), served over
HTTP on 127.0.0.1 and read by Debian's chromium through selenium.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parent.parent
SITE_DIR = REPO_ROOT / os.environ.get("BOOK_SITE", "_build/smoke/html")  # an absolute BOOK_SITE wins
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PREFACE = "chapters/00_preface"
LOAD_TIMEOUT_S = 30
MATHJAX_TIMEOUT_S = 20


def toc_files(node: Any) -> list[str]:
    """Every ``root`` and ``file:`` entry of a parsed ``_toc.yml``, in reading order."""
    if isinstance(node, list):
        return [name for item in node for name in toc_files(item)]
    if not isinstance(node, dict):
        return []
    names = [str(node[key]) for key in ("root", "file") if key in node]
    for key in ("parts", "chapters", "sections"):
        names += toc_files(node.get(key, []))
    return names


PAGES = toc_files(yaml.safe_load((REPO_ROOT / "_toc.yml").read_text()))


def page_html(site: Path, page: str) -> Path:
    """The html file that Sphinx writes for the toc entry ``page`` (which may carry its suffix)."""
    return site / (str(Path(page).with_suffix("")) + ".html")


@pytest.fixture(scope="module")
def site() -> Path:
    """The built website; fails (never skips) when it has not been built."""
    if not (SITE_DIR / "index.html").is_file():
        pytest.fail(
            f"no website at {SITE_DIR}: `make test` builds the smoke site (or run "
            "`python -m tools.site build --profile smoke --out _build/smoke/html`), or set BOOK_SITE"
        )
    return SITE_DIR


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without writing a line per request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>/`` serving ``site`` from a background thread."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=site)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    """Headless Debian chromium; Selenium Manager is never asked to download a browser or a driver."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: `apt-get install chromium chromium-driver`")
    profile = tempfile.mkdtemp(prefix="book-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(LOAD_TIMEOUT_S)
    browser.set_script_timeout(MATHJAX_TIMEOUT_S + 10)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(browser: webdriver.Chrome, script: str, what: str, timeout: float = LOAD_TIMEOUT_S) -> None:
    """Wait until the JavaScript expression ``script`` is true, failing with ``what`` otherwise."""
    try:
        WebDriverWait(browser, timeout).until(lambda b: b.execute_script(f"return {script};"))
    except TimeoutException:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


# Resolves once MathJax has typeset the page; answers an error message (or null) to the callback.
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const limit = arguments[0] * 1000;
const start = Date.now();
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done(null), (err) => done(String(err)));
  } else if (Date.now() - start > limit) {
    done("MathJax never started (window.MathJax.startup.promise is missing)");
  } else {
    setTimeout(poll, 100);
  }
})();
"""

# Every TeX expression that MathJax could not typeset: a TeX error (merror) or an undefined macro, which
# the noundefined extension draws as red text instead of failing.
TEX_ERRORS = """
const bad = [];
for (const item of MathJax.startup.document.math) {
  let mml = "";
  try { mml = MathJax.startup.toMML(item.root); } catch (err) { mml = ""; }
  const merror = item.typesetRoot && item.typesetRoot.querySelector("mjx-merror");
  if (merror || mml.includes("<merror")) {
    bad.push(item.math + "  [" + ((merror && merror.getAttribute("data-mjx-error")) || "TeX error") + "]");
  } else if (/<mtext mathcolor="red">\\\\/.test(mml)) {
    bad.push(item.math + "  [undefined macro]");
  }
}
if (!bad.length) {
  for (const node of document.querySelectorAll("mjx-merror")) {
    bad.push(node.getAttribute("data-mjx-error") || node.textContent);
  }
}
return bad;
"""


def check_images(browser: webdriver.Chrome) -> None:
    """Every image has finished loading and has a non-zero natural size."""
    browser.execute_script("for (const img of document.images) img.loading = 'eager';")
    wait_for(browser, "Array.from(document.images).every(img => img.complete)", "every <img> to load")
    broken = browser.execute_script(
        "return Array.from(document.images)"
        ".filter(img => !(img.naturalWidth > 0 && img.naturalHeight > 0))"
        ".map(img => img.getAttribute('src'));"
    )
    assert not broken, f"images that did not load (zero natural size): {broken}"


def check_math(browser: webdriver.Chrome, base: str) -> None:
    """Any MathJax comes from the site itself; on a page with math it is tex-chtml.js and typesets it all.

    Sphinx adds MathJax only to pages that have math, so a page without any has nothing more to check.
    """
    local = base + "_static/mathjax/"
    sources = browser.execute_script(
        "return Array.from(document.scripts).map(s => s.src).filter(src => /mathjax/i.test(src));"
    )
    foreign = [src for src in sources if not src.startswith(local)]
    assert not foreign, f"MathJax loaded from outside the site (the book must read offline): {foreign}"
    if not browser.execute_script("return document.querySelectorAll('.math').length > 0;"):
        return
    assert any(src.split("?")[0] == local + "tex-chtml.js" for src in sources), (
        f"the page has math but no <script> loads the site's own _static/mathjax/tex-chtml.js: {sources}"
    )
    error = browser.execute_async_script(WAIT_FOR_MATHJAX, MATHJAX_TIMEOUT_S)
    assert error is None, f"MathJax failed: {error}"
    assert browser.execute_script("return document.querySelectorAll('mjx-container').length;") > 0, (
        "the page has math but MathJax typeset none of it"
    )
    untypeset = browser.execute_script(
        "return Array.from(document.querySelectorAll('.math'))"
        ".filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.trim());"
    )
    problems = [f"{tex}  [not typeset]" for tex in untypeset] + browser.execute_script(TEX_ERRORS)
    assert not problems, "math that MathJax could not typeset:\n" + "\n".join(problems)


EDITION_LINE = re.compile(r"(smoke|cpu|gpu) edition: outputs computed on .+ with torch \S+, \d{4}-\d\d-\d\d")


def check_edition_line(browser: webdriver.Chrome) -> None:
    """The page says, in one visible line, which edition it is: profile, device, torch version and date."""
    lines = browser.find_elements(By.CSS_SELECTOR, "p.book-edition")
    assert len(lines) == 1, f"the page has {len(lines)} edition lines, not one"
    assert lines[0].is_displayed(), "the edition line is hidden"
    assert EDITION_LINE.fullmatch(lines[0].text), f"the edition line reads {lines[0].text!r}"


def console_errors(browser: webdriver.Chrome, base: str) -> list[str]:
    """The SEVERE browser-console messages since the last call (reading the log empties it).

    The browser's own request for ``/favicon.ico`` is left out: it comes only when a page declares no icon,
    at a moment after the load that cannot be waited for, so ``test_favicon`` checks the icon instead.
    """
    fallback_icon = base + "favicon.ico "
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and not entry["message"].startswith(fallback_icon)
    ]


def test_toc_pages_exist(site: Path) -> None:
    """Every page of _toc.yml was built."""
    assert PAGES, "_toc.yml lists no pages"
    missing = [page for page in PAGES if not page_html(site, page).is_file()]
    assert not missing, f"pages in _toc.yml missing from {site}: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=PAGES)
def test_page(page: str, site: Path, base_url: str, driver: webdriver.Chrome) -> None:
    """The page loads, its images have a size, its math is typeset, it states its edition, and the console
    shows no error."""
    html = page_html(site, page)
    assert html.is_file(), f"{page} was not built ({html} is missing)"
    console_errors(driver, base_url)  # drop what earlier pages left behind
    driver.get(base_url + html.relative_to(site).as_posix())
    wait_for(driver, "document.readyState === 'complete'", f"{page} to load")
    assert driver.title, f"{page} has no title"
    assert "404" not in driver.title, f"{page}: {driver.title}"
    check_images(driver)
    check_math(driver, base_url)
    check_edition_line(driver)
    errors = console_errors(driver, base_url)
    assert not errors, f"browser console errors on {page}:\n" + "\n".join(errors)


def test_some_page_has_math(site: Path) -> None:
    """The preface has math, so the MathJax checks above are exercised and not skipped for lack of it."""
    built = [page for page in PAGES if page_html(site, page).is_file()]
    with_math = [page for page in built if 'class="math' in page_html(site, page).read_text(encoding="utf-8")]
    assert with_math, "no page of the book has math, so MathJax was never checked"
    assert PREFACE in with_math, f"{PREFACE} should have math; pages with math: {with_math}"


def test_preface_notebook_download(site: Path, base_url: str, driver: webdriver.Chrome) -> None:
    """The preface's .ipynb is in the site, carries executed outputs, and the download button links to it."""
    notebook_path = site / "_sources" / f"{PREFACE}.ipynb"
    assert notebook_path.is_file(), f"{notebook_path} is missing"
    notebook = json.loads(notebook_path.read_text(encoding="utf-8"))
    cells = notebook.get("cells")
    assert isinstance(cells, list) and cells, "the notebook has no cells"
    assert any(cell.get("outputs") for cell in cells), "the downloadable notebook has no outputs"
    url = base_url + f"_sources/{PREFACE}.ipynb"
    driver.get(base_url + f"{PREFACE}.html")
    links = [
        a.get_attribute("href")
        for a in driver.find_elements(By.CSS_SELECTOR, "a.btn-download-notebook-button")
    ]
    assert url in links, f"the download-notebook-button of {PREFACE} links to {links}, not {url}"
    with urllib.request.urlopen(url, timeout=LOAD_TIMEOUT_S) as response:
        assert response.status == 200
        assert json.loads(response.read()) == notebook


def test_favicon(site: Path, base_url: str, driver: webdriver.Chrome) -> None:
    """The pages declare an icon that loads; without one every browser logs a 404 for /favicon.ico."""
    driver.get(base_url + f"{PREFACE}.html")
    icons = [
        link.get_attribute("href") for link in driver.find_elements(By.CSS_SELECTOR, "link[rel~='icon']")
    ]
    assert icons, (
        "the pages declare no icon, so browsers request /favicon.ico and log a 404 on every page: "
        "set `html.favicon` in _config.yml"
    )
    for icon in icons:
        with urllib.request.urlopen(icon, timeout=LOAD_TIMEOUT_S) as response:
            assert response.status == 200, f"icon {icon}: HTTP {response.status}"



# The pages whose figures include animations (book.plotting.animate_points: matplotlib's to_jshtml player).
ANIMATED_PAGES = ["chapters/00_preface", "chapters/01_normalizing_flows", "chapters/02_flow_matching"]
PLAY_TIMEOUT_S = 10

# Every request the page has made, as the browser's resource timing records it.
REQUESTED_URLS = "return performance.getEntriesByType('resource').map(entry => entry.name);"


@pytest.mark.parametrize("page", ANIMATED_PAGES, ids=ANIMATED_PAGES)
def test_animations_play_offline(page: str, site: Path, base_url: str, driver: webdriver.Chrome) -> None:
    """Every animation of the page plays with the network switched off: pressing its play button changes the
    frame shown, and no request of the page ever left the local site."""
    html = page_html(site, page)
    assert html.is_file(), f"{page} was not built ({html} is missing)"
    console_errors(driver, base_url)  # drop what earlier pages left behind
    driver.get(base_url + html.relative_to(site).as_posix())
    wait_for(driver, "document.readyState === 'complete'", f"{page} to load")
    animations = driver.find_elements(By.CSS_SELECTOR, "div.animation")
    assert animations, f"{page} has no animation (a div.animation from book.plotting.animate_points)"
    driver.set_network_conditions(offline=True, latency=0, throughput=0)
    try:
        for index, animation in enumerate(animations):
            image = f"document.querySelectorAll('div.animation img')[{index}]"
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", animation)
            wait_for(driver, f"{image}.src.startsWith('data:image/png')", f"animation {index}'s first frame")
            driver.execute_script(f"window.bookFirstFrame = {image}.src;")
            animation.find_element(By.CSS_SELECTOR, "button[title='Play']").click()
            wait_for(driver, f"{image}.src !== window.bookFirstFrame",
                     f"{page}: animation {index} to change its frame after play", timeout=PLAY_TIMEOUT_S)
            animation.find_element(By.CSS_SELECTOR, "button[title='Pause']").click()
    finally:
        driver.delete_network_conditions()
    foreign = [url for url in driver.execute_script(REQUESTED_URLS) if not url.startswith(base_url)]
    assert not foreign, f"{page} requested files from outside the site (it must read offline): {foreign}"
    errors = console_errors(driver, base_url)
    assert not errors, f"browser console errors while playing the animations of {page}:\n" + "\n".join(errors)
