"""The page at ``GET /`` of ``zoo serve``: a person tries the model in a browser. Plain HTML, JS and CSS shipped in
the package (``zoo/serve/static/``), served by the same process, no build step and nothing fetched from the
internet. The page reads ``/info`` and calls ``/predict`` like any client; it holds nothing secret, so it and its
assets are answered without the API key (:data:`PAGE_PATHS`, open in :class:`zoo.serve.api.RequestGuard`) while
``/info`` and ``/predict`` still need it: the page asks for the key and keeps it in the tab's sessionStorage.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

#: file name -> media type of the page's assets, each answered at ``/<name>`` ("index.html" at ``/``)
ASSETS = {"index.html": "text/html; charset=utf-8", "page.js": "text/javascript; charset=utf-8",
          "page.css": "text/css; charset=utf-8"}
#: the routes answered without the API key: the page and its assets only
PAGE_PATHS = ("/", *(f"/{name}" for name in ASSETS if name != "index.html"))
#: how many user ids of a recommender ``/info`` offers the page as examples (the ids are the export's, never names)
EXAMPLE_USERS = 5


def asset(name: str) -> bytes:
    """One of the page's files, read from the installed package (a wheel or a checkout alike)."""
    return (files("zoo.serve") / "static" / name).read_bytes()


def page_info(raw: dict[str, Any]) -> dict[str, Any]:
    """What the page needs in ``/info`` beyond build_server's fields, from the export's ``zoo_export.json``: the
    run's model-card summary (``card``: task, data, test metrics, baseline; written by ``zoo export`` of a run) and,
    for a recommender, its size and a few user ids to try."""
    out: dict[str, Any] = {}
    if isinstance(raw.get("card"), dict):
        out["card"] = raw["card"]
    if "multi_label" in raw:
        out["multi_label"] = bool(raw["multi_label"])
    recsys = raw.get("recsys")
    if isinstance(recsys, dict):
        users, items = recsys.get("user_ids") or [], recsys.get("item_ids") or []
        out["recommender"] = {"num_users": len(users), "num_items": max(len(items) - 1, 0),
                              "example_users": [str(u) for u in users[:EXAMPLE_USERS]],
                              "item_names": bool(recsys.get("item_names")),
                              "sequence": bool((raw.get("preprocessing") or {}).get("history_len"))}
    return out


def add_page(server: Any, raw: dict[str, Any]) -> None:
    """Register ``/`` and the assets on a LitServer's FastAPI app (``server.app``), in place of LitServe's own
    ``/`` ("litserve running"), and add :func:`page_info` to what ``/info`` answers (``server.model_metadata``)."""
    from fastapi import Response

    app = server.app
    # LitServe registers its "/" in the LitServer constructor; Starlette answers with the first matching route
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/"]
    for name, media_type in ASSETS.items():
        body = asset(name)  # read once: a few kB, answered from memory

        async def send(body: bytes = body, media_type: str = media_type) -> Response:
            return Response(content=body, media_type=media_type, headers={"Cache-Control": "no-cache"})

        path = "/" if name == "index.html" else f"/{name}"
        app.add_api_route(path, send, methods=["GET"], include_in_schema=False)
    if isinstance(server.model_metadata, dict):
        server.model_metadata.update(page_info(raw))


__all__ = ["ASSETS", "PAGE_PATHS", "add_page", "asset", "page_info"]
