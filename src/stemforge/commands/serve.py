"""``stemforge serve``: the web app and HTTP API (FastAPI + uvicorn) over the separation engine."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="run the web app and HTTP API (upload a song, play and download its stems)",
        description="Serve the page at / (drag a song in, hear and mix its stems, download them) and the REST API "
                    "at /api (OpenAPI docs at /docs). Jobs are kept in --data (SQLite + one folder per job) and "
                    "survive a restart. Needs the web extra: pip install 'stemforge[web]'.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes separating at once (default 1)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads per worker (default: CPUs / workers)")
    p.add_argument("--data", type=Path, default=Path("stemforge-data"), metavar="DIR",
                   help="folder for the job database and files (default: stemforge-data)")
    p.add_argument("-d", "--device", default="cpu", help="cpu or cuda for the workers (default cpu)")
    p.add_argument("--queue", type=int, default=16, metavar="N",
                   help="most jobs waiting to start; more uploads get 503 'busy' (default 16)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, metavar="MB", help="largest upload (default 200)")
    p.add_argument("--max-seconds", type=float, default=1200.0, metavar="S",
                   help="longest audio accepted, in seconds (default 1200)")
    p.add_argument("--token", default=os.environ.get("STEMFORGE_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' on /api (default: $STEMFORGE_TOKEN; none: open)")
    p.add_argument("--keep-days", type=float, default=7.0, metavar="D",
                   help="delete finished jobs and their files D days after they end (default 7; 0 keeps them)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stemforge.extras import require
    from stemforge.web.config import ServeConfig

    for module in ("fastapi", "uvicorn", "python_multipart", "filetype"):
        require(module, extra="web", purpose="stemforge serve")
    import uvicorn

    from stemforge.web.app import create_app

    config = ServeConfig(data=args.data, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                         device=args.device, queue=args.queue, max_upload_mb=args.max_upload_mb,
                         max_seconds=args.max_seconds, token=args.token or None, keep_days=args.keep_days)
    app = create_app(config)  # validates the settings
    _check_port(config.host, config.port)
    app.state.server.open()  # one-line errors (folder taken or not writable) before uvicorn starts
    if config.host not in ("127.0.0.1", "localhost", "::1") and config.token is None:
        logging.getLogger(__name__).warning("serving on %s without --token: anyone who can reach it can upload",
                                            config.host)
    # stemforge -v: uvicorn's debug lines; default: one line per request; -q: warnings and errors only.
    level = {logging.DEBUG: "debug", logging.ERROR: "warning"}.get(getattr(args, "log_level", None), "info")
    uvicorn.run(app, host=config.host, port=config.port, log_level=level, timeout_graceful_shutdown=10)
    return 0


def _check_port(host: str, port: int) -> None:
    """Refuse, in one line, an address that cannot be listened on (before workers start loading models)."""
    import socket

    from stemforge.errors import StemforgeError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StemforgeError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn sets it
        try:
            probe.bind(address)
        except OSError as exc:
            raise StemforgeError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                                 "(another server there? choose another --port)") from None
