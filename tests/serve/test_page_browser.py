"""The page of ``zoo serve`` in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
installed by .ci/run) driven by Selenium, against real ``zoo serve`` processes on tiny text, image and BPR exports.
Each test types / uploads / enters a user id as a person would, reads the answer from the page, and compares it
with ``zoo predict`` (text) or ``zoo.inference.load(...).predict`` (image, BPR) on the same input. One browser and
one server per model for the module; a screenshot of each page is saved under the test's tmp_path."""

from __future__ import annotations

import base64
import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.serve.test_serve import KEY, _free_port, _png, exported, kill_group, start_server  # noqa: F401

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
                              "chromium-driver; .ci/run installs them)"),
]
CARD = {"task": "Image Classification", "dataset": "tiny shapes", "summary": "Tells the tiny test shapes apart.",
        "metrics": {"acc": 0.875, "f1_macro": 0.86}, "headline": "acc",
        "baseline": {"reference": "logistic regression on pixels", "beats": True,
                     "rows": [{"metric": "acc", "model": 0.875, "reference": 0.5}]}}


@pytest.fixture(scope="module")
def servers(exported, tmp_path_factory):  # noqa: F811 (test_serve's fixture, reused)
    """A server per model, started side by side: text with the API key on, image (exported with a card summary)
    and BPR without."""
    from zoo.export import export_model
    from zoo.registry import MODELS
    from zoo.tasks.image import tiny_case

    tmp = tmp_path_factory.mktemp("page")
    model, data = tiny_case(tmp)
    export_model(model, data, "onnx", tmp / "image", card=CARD)
    rec, rdata = MODELS.entry("bpr").meta["tiny_case"](tmp)
    export_model(rec, rdata, "onnx", tmp / "bpr")
    runs = {"text": (exported["folder"], ("--api-key", KEY)), "image": (tmp / "image", ()), "bpr": (tmp / "bpr", ())}
    ports = {name: _free_port() for name in runs}
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(start_server, folder, ports[name], tmp, "--threads", "1", *args)
                   for name, (folder, args) in runs.items()}
        procs = {}
        for name, fut in futures.items():
            try:
                procs[name] = fut.result()
            except BaseException:
                for f in futures.values():
                    if f.exception() is None:
                        kill_group(f.result())
                raise
    try:
        yield {name: {"url": f"http://127.0.0.1:{ports[name]}/", "folder": runs[name][0]} for name in runs} | {
            "text_rows": exported["rows"], "texts": exported["texts"], "user": str(rdata.user_ids[0])}
    finally:
        for proc in procs.values():
            kill_group(proc)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # Debian's browser and driver: selenium-manager downloads nothing
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=900,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, css, timeout=30):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def _wait_text(driver, css, pattern, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: re.search(pattern, d.find_element("css selector", css).text))
    return driver.find_element("css selector", css).text


def _submit(driver):
    driver.find_element("id", "submit").click()


def _answer(driver):
    """The page's answer as shown: top label, its confidence and the bars (label -> probability)."""
    label = _wait(driver, "#label")
    bars = {b.get_attribute("data-label"): float(b.get_attribute("data-p"))
            for b in driver.find_elements("css selector", "#answer-body .bar")}
    return label.text.split()[0], float(label.get_attribute("data-confidence")), bars


def test_text_page_asks_for_the_key_then_answers_as_zoo_predict(servers, browser, tmp_path):
    rows, texts = servers["text_rows"], servers["texts"]
    browser.get(servers["text"]["url"])
    _wait(browser, "#key-input").send_keys("wrong", "\n")
    assert "refused the API key (401)" in _wait_text(browser, "#error", r"401")
    _wait(browser, "#key-input").send_keys(KEY, "\n")
    _wait(browser, "#input-text").send_keys(texts[0])
    assert browser.execute_script("return sessionStorage.getItem('zoo-serve-api-key')") == KEY  # this tab only
    assert browser.execute_script("return localStorage.length + document.cookie.length") == 0
    _submit(browser)
    label, confidence, bars = _answer(browser)
    assert label == rows[0]["label"] and abs(confidence - rows[0]["confidence"]) <= 1e-5
    assert 1 <= len(bars) <= 5 and max(bars, key=bars.get) == label
    assert re.fullmatch(r"answered in \d+ ms", browser.find_element("id", "latency").text)
    assert json.loads(browser.find_element("id", "raw").get_attribute("textContent"))["label"] == label
    browser.save_screenshot(str(tmp_path / "text.png"))

    # an error from the API is shown in words, not as a blank page
    box = browser.find_element("id", "input-text")
    box.clear()
    box.send_keys("   ")
    _submit(browser)
    error = _wait_text(browser, "#error", r"400")
    assert error.startswith("Error 400") and "text: empty" in error, error
    browser.save_screenshot(str(tmp_path / "text_error.png"))


def test_image_page_uploads_previews_and_answers_as_the_predictor(servers, browser, tmp_path):
    from zoo.inference import load

    png = tmp_path / "digit.png"
    png.write_bytes(_png())
    browser.get(servers["image"]["url"])
    _wait(browser, "#drop-zone")
    browser.find_element("id", "input-image").send_keys(str(png))
    preview = _wait(browser, "#preview")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", preview) == 24
    _submit(browser)
    label, confidence, bars = _answer(browser)
    expected = load(servers["image"]["folder"]).predict([png.read_bytes()])[0]
    assert label == expected["label"] and abs(confidence - expected["confidence"]) <= 1e-5
    assert all(abs(p - expected["probabilities"][k]) <= 1e-5 for k, p in bars.items())
    # the model card's summary from the export: task, data, test metric, baseline
    card = _wait(browser, "#card").text
    assert CARD["summary"] in card and "tiny shapes" in card and "Beats the baseline" in card
    assert "test/acc\n0.8750\n0.5000" in browser.find_element("id", "card-metrics").text.replace(" ", "\n")
    browser.save_screenshot(str(tmp_path / "image.png"))

    # the same image dropped on the drop zone, as a file dragged from the desktop arrives
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const drop = new DataTransfer();
        drop.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        document.getElementById("preview").hidden = true;
        document.getElementById("answer").hidden = true;
        document.getElementById("drop-zone").dispatchEvent(new DragEvent("drop", {dataTransfer: drop, bubbles: true}));
    """, base64.b64encode(png.read_bytes()).decode())
    _wait(browser, "#preview")
    assert browser.execute_script("return document.getElementById('input-image').files[0].name") == "dropped.png"
    _submit(browser)
    assert _answer(browser)[:2] == (label, confidence)


def test_recommender_page_answers_a_user_and_says_an_unknown_one_in_words(servers, browser, tmp_path):
    from zoo.inference import load

    browser.get(servers["bpr"]["url"])
    user = servers["user"]
    assert user in _wait(browser, "#user-hint").text  # example ids to try
    browser.find_element("id", "input-user").send_keys(user)
    _submit(browser)
    _wait(browser, "#items")
    shown = [li.get_attribute("data-item") for li in browser.find_elements("css selector", "#items li")]
    expected = load(servers["bpr"]["folder"]).predict([{"user": user}])[0]
    assert shown == [it["item"] for it in expected["items"]] and shown
    browser.save_screenshot(str(tmp_path / "bpr.png"))

    box = browser.find_element("id", "input-user")
    box.clear()
    box.send_keys("nobody")
    _submit(browser)
    error = _wait_text(browser, "#error", r"404")
    assert error.startswith("Error 404") and "user" in error and "nobody" in error, error
    assert not browser.find_element("id", "answer").is_displayed()


def test_answers_the_served_models_do_not_give_are_drawn_and_a_silent_server_is_said(servers, browser):
    """Shapes the tiny served models do not answer with (a conformal prediction set, NER spans, multi-label, named
    items of an unknown user), drawn by the page's own render function; user text lands as text, never as HTML.
    And a server that does not answer is said in words."""
    browser.get(servers["bpr"]["url"])
    _wait(browser, "#user-input")
    browser.execute_script("zooPage.render({label: 'cat', confidence: 0.6, probabilities: {cat: 0.6, dog: 0.4},"
                           " prediction_set: 'cat|dog'}, 12)")
    _wait(browser, "#prediction-set")
    assert [c.text for c in browser.find_elements("css selector", "#prediction-set span")] == ["cat", "dog"]
    browser.execute_script("zooPage.render({entities: [{type: 'PER', start: 15, end: 18, text: 'Bob', score: 0.9},"
                           " {type: 'LOC', start: 22, end: 27, text: 'Paris', score: 0.8}]}, 3,"
                           " '<b>Ada</b> met Bob in Paris')")
    assert browser.execute_script("return document.querySelectorAll('#entities b').length") == 0
    marks = browser.execute_script("return [...document.querySelectorAll('#entities mark')]"
                                   ".map(m => [m.dataset.type, m.firstChild.textContent])")
    assert marks == [["PER", "Bob"], ["LOC", "Paris"]]
    assert browser.find_element("id", "entities").text.startswith("<b>Ada</b> met Bob")
    browser.execute_script("zooPage.render({labels: ['sport'], scores: {sport: 0.9, politics: 0.2}}, 5)")
    assert [c.text for c in browser.find_elements("css selector", "#labels span")] == ["sport"]
    assert len(browser.find_elements("css selector", "#answer-body .bar")) == 2
    browser.execute_script("zooPage.render({user: 'new', known_user: false, items: [{rank: 1, item: '50', "
                           "score: 583, name: 'Star Wars (1977)'}]}, 4)")
    assert "Unknown user: the most popular items." in browser.find_element("id", "answer-body").text
    assert browser.find_element("css selector", "#items li").text.startswith("Star Wars (1977) 50")

    browser.execute_script("window.fetch = () => Promise.reject(new TypeError('Failed to fetch'))")
    browser.find_element("id", "input-user").send_keys(servers["user"])
    _submit(browser)
    assert "the server did not answer (Failed to fetch)" in _wait_text(browser, "#error", "did not answer")
