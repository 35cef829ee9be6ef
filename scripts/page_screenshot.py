"""A screenshot of the page of ``zoo serve`` answering an image, for docs/serving.md (docs/img/serve/page.png).

    zoo fit --config recipes/vision/digits.yaml
    zoo test --config runs/digits/version_0/config.yaml --ckpt_path runs/digits/version_0/checkpoints/best.ckpt
    zoo export runs/digits/version_0 --format onnx --out exported/digits
    python scripts/page_screenshot.py exported/digits docs/img/serve/page.png

Needs Debian's chromium and chromium-driver and the dev extra (selenium). The image sent is a digit of
scikit-learn's 8 x 8 set, scaled up to 64 x 64 pixels.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _digit_png(index: int) -> bytes:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[index] * (255 / 16)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((64, 64), Image.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="an export folder (zoo export ... --out DIR)")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--digit", type=int, default=1700, help="index of the digit sent (scikit-learn's set)")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", args.export, "--port", str(port),
                               "--threads", "1"], start_new_session=True)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=820,1000"):
        options.add_argument(arg)
    driver = None
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
        driver.get(f"http://127.0.0.1:{port}/")
        with tempfile.TemporaryDirectory() as tmp:
            image = Path(tmp) / "digit.png"
            image.write_bytes(_digit_png(args.digit))
            WebDriverWait(driver, 30).until(ec.visibility_of_element_located((By.ID, "drop-zone")))
            driver.find_element(By.ID, "input-image").send_keys(str(image))
            for _ in range(2):  # the second answer's latency: the first includes the worker's warm-up
                driver.find_element(By.ID, "submit").click()
                WebDriverWait(driver, 30).until(ec.visibility_of_element_located((By.ID, "label")))
                WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "submit").is_enabled())
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(820, height + 140)  # the window's height includes its (headless) frame
        driver.save_screenshot(args.out)
        print(f"wrote {args.out} ({os.path.getsize(args.out) // 1024} KB)")
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(signal.SIGTERM)  # to the main process only, as systemd does: it stops its workers
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
