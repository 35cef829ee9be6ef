"""Serving exported models over HTTP on LitServe (`zoo serve`)."""
