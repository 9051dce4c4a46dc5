"""``stemforge serve``: the web app and HTTP API over the separation engine.

- ``config``: ``ServeConfig``, the server's settings and limits (one typed dataclass);
- ``store``: ``JobStore``, jobs in SQLite (WAL), shared by the server and its worker processes;
- ``uploads``: an upload saved into its job folder, its content sniffed and its audio probed;
- ``worker``: the worker processes (each runs ``stemforge.separate.Separator``, the CLI's engine) and
  ``WorkerPool``, which starts, watches and stops them;
- ``app``: ``create_app(config)``, the FastAPI application (REST routes, server-sent events, the page);
- ``static/``: the page at ``/`` (plain HTML, JavaScript and CSS, no build step).

The server process never imports torch: models are loaded in the worker processes only.
"""

from __future__ import annotations

from stemforge.web.config import ServeConfig

__all__ = ["ServeConfig"]
