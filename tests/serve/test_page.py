"""The page of ``zoo serve`` in-process (no server process, no browser): ``/`` and its assets are answered without
the API key while ``/info`` still needs it, every file the page loads is one of its own (nothing from the
internet), and ``/info`` carries what the page shows (the model card's summary, a recommender's example users).
The browser drives the page against real servers in test_page_browser.py."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import litserve as ls
import pytest
from fastapi.testclient import TestClient

from zoo.serve.api import API_KEY_ENV, OPEN_PATHS, RequestGuard
from zoo.serve.page import ASSETS, PAGE_PATHS, add_page, asset, page_info


class _Echo(ls.LitAPI):
    def setup(self, device):
        pass

    def predict(self, x):
        return x


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "k3y")
    # wired as build_server wires it: RequestGuard in front, the page added after LitServe's own routes
    server = ls.LitServer(_Echo(), accelerator="cpu", model_metadata={"task": "text_classification"},
                          middlewares=[(RequestGuard, {"max_bytes": 1024})])
    add_page(server, {"card": {"task": "Text Classification", "metrics": {"acc": 0.9}}})
    return TestClient(server.app)


def test_the_page_and_its_assets_need_no_key_but_info_does(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "litserve running" not in page.text and 'src="page.js"' in page.text
    for path in PAGE_PATHS[1:]:
        got = client.get(path)
        assert got.status_code == 200 and got.content == asset(path.lstrip("/")), path
    assert client.get("/page.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/info").status_code == 401
    assert client.get("/info", headers={"X-API-Key": "wrong"}).status_code == 401
    info = client.get("/info", headers={"X-API-Key": "k3y"})
    assert info.status_code == 200 and info.json()["model"]["card"]["metrics"] == {"acc": 0.9}
    assert set(OPEN_PATHS) == {"/health", "/", "/page.js", "/page.css"}  # nothing else opened by the page


def test_the_wheel_ships_the_page():
    """The assets are package data: a wheel without them would serve a page that is not there."""
    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["zoo"]
    assert all(any(fnmatch.fnmatch(f"serve/static/{name}", p) for p in patterns) for name in ASSETS), patterns


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href", "action", "srcset", "poster") and v]


def test_the_page_loads_only_its_own_files():
    refs = _Refs()
    refs.feed(asset("index.html").decode())
    assert sorted(r for r in refs.refs if not r.startswith("data:")) == ["page.css", "page.js"]
    for name in ASSETS:
        text = asset(name).decode()
        assert not re.search(r"https?://|[\"'(]//\w", text), f"{name} names an outside address"
        assert "@import" not in text and "importScripts" not in text and "import(" not in text, name
    fetched = re.findall(r"call\(\"([^\"]+)\"", asset("page.js").decode())
    assert sorted(set(fetched)) == ["/info", "/predict"]  # the page talks to its own server's API only


def test_page_info_carries_the_card_summary_and_a_recommenders_examples():
    raw = {"card": {"task": "Recommendation", "metrics": {"ndcg@10": 0.2}},
           "preprocessing": {"history_len": 0},
           "recsys": {"user_ids": [str(u) for u in range(9)], "item_ids": ["[PAD]", "a", "b"], "item_names": None}}
    out = page_info(raw)
    assert out["card"] == raw["card"]
    assert out["recommender"] == {"num_users": 9, "num_items": 2, "example_users": ["0", "1", "2", "3", "4"],
                                  "item_names": False, "sequence": False}
    assert page_info({"task": "image_classification"}) == {}


def test_export_records_the_runs_card_summary(tmp_path):
    """What ``zoo export RUN`` writes under ``card``: read from the files ``zoo test`` leaves in the run."""
    from zoo.reporting.card import collect, summary

    run = tmp_path / "runs" / "digits" / "version_0"
    (run / "test").mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  class_path: zoo.tasks.image.ImageClassifier\n"
                                     "data:\n  init_args:\n    dataset: digits\ncard:\n  summary: Reads digits.\n")
    (run / "test" / "test_metrics.json").write_text(json.dumps({"test/acc": 0.95, "test/loss": 0.2}))
    (run / "test" / "baseline.json").write_text(json.dumps({
        "reference": "logistic regression on pixels", "headline": "acc", "beats": True,
        "rows": [{"metric": "acc", "model": 0.95, "reference": 0.9, "difference": 0.05}]}))
    card = summary(collect([run]))
    assert card == {"task": "Image Classification", "dataset": "digits", "summary": "Reads digits.",
                    "metrics": {"acc": 0.95}, "headline": "acc",
                    "baseline": {"reference": "logistic regression on pixels", "beats": True,
                                 "rows": [{"metric": "acc", "model": 0.95, "reference": 0.9}]}}
