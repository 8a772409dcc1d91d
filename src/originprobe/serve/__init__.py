"""The HTTP service: one fitted Attributor behind FastAPI, with dynamic batching and a web page."""

from .app import create_app, is_loopback, serve

__all__ = ["create_app", "is_loopback", "serve"]
