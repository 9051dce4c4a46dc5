"""``create_app(config)``: the FastAPI application of ``stemforge serve``.

Routes (OpenAPI at ``/docs``, ``/redoc`` and ``/openapi.json``; the documentation pages' scripts are served from
the ``fastapi_offline`` package, not a CDN, so they work on a machine without internet):

- ``POST /api/jobs``: upload a song (multipart ``file``; ``model``, ``stems`` or ``two_stems``, ``format``,
  ``bits``, ``mp3_bitrate``) -> 201 and the job;
- ``GET /api/jobs/{id}``: state, progress, error, stems; ``GET /api/jobs/{id}/events``: the same as
  server-sent events until the job ends;
- ``GET /api/jobs/{id}/stems/{stem}``, ``GET /api/jobs/{id}/zip``: the files; ``DELETE /api/jobs/{id}``;
- ``GET /api/models``: the models a job may use; ``GET /api/server``: version, limits, whether a token is needed;
- ``GET /``: the page (``static/``).

Every error is JSON ``{"error": "<one line>", "code": "<word>"}`` with its HTTP status: 401 (token), 404
(no such job or stem), 409 (job not finished, or failed), 413 (upload too large or too long), 415 (not audio),
422 (corrupt audio, bad options), 503 (queue full, server starting).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Literal

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline  # FastAPI whose /docs and /redoc need no CDN
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from stemforge import __version__
from stemforge.audio import check_mp3_bitrate, check_output_format, default_file_mode
from stemforge.errors import StemforgeError
from stemforge.web.config import FORMATS, ServeConfig
from stemforge.web.store import DONE, FAILED, RUNNING, Job, JobStore
from stemforge.web.uploads import UploadError, probe, remove_folder, save_upload
from stemforge.web.worker import MODELS_KEY, WorkerPool

#: A job id: 32 lowercase hex digits (``uuid4().hex``); anything else is "no such job".
JOB_ID = re.compile(r"^[0-9a-f]{32}$")

#: Multipart framing allowed on top of the upload limit.
FORM_OVERHEAD = 64 * 1024

#: Seconds between two looks at a job for its event stream, and between keep-alive comments.
EVENT_POLL = 0.25
KEEPALIVE = 15.0

#: How long a request waits for the workers to publish the model list after a start.
MODELS_WAIT = 60.0

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}


class ApiError(HTTPException):
    """An error answered as ``{"error": message, "code": code}`` with ``status``."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
          413: "too_large", 415: "unsupported", 422: "invalid", 503: "busy"}


class Server:
    """What one running server holds: its settings, the job store, the worker pool and the data-folder lock.

    Args:
        config: the settings (validated here).
    """

    def __init__(self, config: ServeConfig) -> None:
        config.validate()
        self.config = config
        self.store: JobStore | None = None
        self.pool: WorkerPool | None = None
        self._lock_fd: int | None = None
        self._add_lock = threading.Lock()
        self.recovered: dict[str, list[str]] = {}

    def open(self) -> None:
        """Take the data folder (one server per folder), open the store, recover and sweep. Idempotent.

        Raises:
            StemforgeError: the folder cannot be written or another server is using it.
        """
        if self.store is not None:
            return
        data = Path(self.config.data)
        try:
            self.config.jobs_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(data / "server.lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise StemforgeError(f"--data {data}: cannot be written ({exc.strerror or exc})") from exc
        try:
            import fcntl  # POSIX; elsewhere one server per folder is up to the user

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except BlockingIOError:
            os.close(fd)
            raise StemforgeError(f"--data {data}: another stemforge serve is using this folder") from None
        self._lock_fd = fd
        self.store = JobStore(self.config.database)
        self.recovered = self.store.recover(self.config.max_attempts)
        for job_id in self.recovered["removed"]:
            remove_folder(self.config.jobs_dir / job_id)
        self._sweep()
        self.expire()

    def _sweep(self) -> None:
        """At start, before any worker runs: every temporary file is a leftover, and so is a folder without a job."""
        assert self.store is not None
        known = self.store.ids()
        for folder in self.config.jobs_dir.iterdir():
            if not folder.is_dir():
                folder.unlink(missing_ok=True)
                continue
            if folder.name not in known:  # a crash between storing an upload and queueing its job
                remove_folder(folder)
                continue
            for path in folder.rglob("*"):
                if path.is_file() and (".part" in path.name or path.name.startswith(".stemforge-")):
                    path.unlink(missing_ok=True)

    def expire(self) -> list[str]:
        """Delete the jobs that ended more than ``keep_days`` ago, with their files.

        Returns:
            Their ids.
        """
        if not self.config.keep_days or self.store is None:
            return []
        gone = []
        for job in self.store.expired(time.time() - self.config.keep_days * 86400):
            remove_folder(self.config.jobs_dir / job.id)
            self.store.remove(job.id)
            gone.append(job.id)
        return gone

    def start(self) -> None:
        """Open (if not yet) and start the workers."""
        self.open()
        assert self.store is not None
        self.pool = WorkerPool(self.config, self.store)
        self.pool.start()

    def stop(self) -> None:
        """Stop the workers (running jobs go back to the queue) and release the data folder."""
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.store = None

    def models(self) -> list[dict[str, Any]]:
        """The model list the workers published (waits for the first worker after a start).

        Raises:
            ApiError: 503 if no worker has published it in time.
        """
        assert self.store is not None
        deadline = time.monotonic() + MODELS_WAIT
        while True:
            models = self.store.get_meta(MODELS_KEY)
            if models is not None:
                return models
            if time.monotonic() > deadline:
                raise ApiError(503, "the server is starting (its workers are loading); try again shortly", "starting",
                               {"Retry-After": "5"})
            time.sleep(0.1)

    def add_job(self, upload: UploadFile, model: str, options: dict[str, Any]) -> Job:
        """Check the options, store the upload in a new job folder, probe it and queue it.

        Raises:
            ApiError: 503 (queue full), 422 (options, corrupt audio), 413 (too large or long), 415 (not audio).
        """
        assert self.store is not None
        self._check_room()
        known = {m["name"]: m for m in self.models()}
        if model not in known:
            raise ApiError(422, f"unknown model {model!r}; this server runs: {', '.join(known)}", "invalid")
        _check_options(options, known[model]["stems"])
        job_id = uuid.uuid4().hex
        folder = self.config.jobs_dir / job_id
        try:
            stored = save_upload(upload.file, folder, self.config.max_upload_bytes)
            seconds = probe(stored, self.config.max_seconds)
        except UploadError as exc:
            remove_folder(folder)
            raise ApiError(exc.status, str(exc), exc.code) from exc
        except BaseException:
            remove_folder(folder)
            raise
        filename = _display_name(upload.filename)
        with self._add_lock:
            try:
                self._check_room()
            except ApiError:
                remove_folder(folder)
                raise
            return self.store.add(job_id, filename, stored.name, model, options, seconds)

    def _check_room(self) -> None:
        assert self.store is not None
        waiting = self.store.waiting()
        if waiting >= self.config.queue:
            raise ApiError(503, f"the server is busy: {waiting} files are waiting to be separated; try again in a "
                           "minute", "busy", {"Retry-After": "30"})

    def job(self, job_id: str) -> Job:
        """The job by id (a deleted one is gone).

        Raises:
            ApiError: 404.
        """
        assert self.store is not None
        job = self.store.get(job_id) if JOB_ID.match(job_id) else None
        if job is None or job.cancelled:
            raise ApiError(404, f"no job {job_id!r} (it may have been deleted or expired)", "not_found")
        return job

    def finished(self, job_id: str) -> Job:
        """A job whose stems can be downloaded.

        Raises:
            ApiError: 404 (no job), 409 (not finished yet, or failed: the reason is in the message).
        """
        job = self.job(job_id)
        if job.state == FAILED:
            raise ApiError(409, f"the job failed: {job.error}", "job_failed")
        if job.state != DONE:
            raise ApiError(409, f"the job is {job.state} ({job.progress:.0%}); its stems are not ready yet", "not_ready")
        return job

    def zip_of(self, job: Job) -> Path:
        """The job's stems in one zip (stored, not compressed: audio does not shrink), built once, atomically."""
        folder = self.config.jobs_dir / job.id
        target = folder / "stems.zip"
        if target.is_file():
            return target
        track = Path(job.filename).stem or "track"
        fd, tmp = tempfile.mkstemp(prefix=".stems.zip.", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as archive:
                for stem, rel in (job.stems or {}).items():
                    archive.write(folder / rel, f"{track}/{stem}{Path(rel).suffix}")
            os.chmod(tmp, default_file_mode())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def _check_options(options: dict[str, Any], model_stems: list[str]) -> None:
    """The output options of a job, checked as ``stemforge separate`` checks them (one line, 422)."""
    fmt, bits, bitrate = options["fmt"], options.get("bits"), options.get("mp3_bitrate")
    try:
        if fmt == "mp3":
            if bits is not None:
                raise StemforgeError(f"bits {bits} does not apply to mp3 (set mp3_bitrate instead)")
            if bitrate is not None:
                check_mp3_bitrate(bitrate)
        else:
            if bitrate is not None:
                raise StemforgeError(f"mp3_bitrate applies to mp3 only, not {fmt}")
            check_output_format(fmt, bits or "16", 2)
    except StemforgeError as exc:
        raise ApiError(422, str(exc).replace("--", ""), "invalid") from exc
    stems, two = options.get("stems"), options.get("two_stems")
    if stems and two:
        raise ApiError(422, "give either stems or two_stems, not both", "invalid")
    if two and two not in model_stems:
        raise ApiError(422, f"two_stems {two!r}: the model's stems are {', '.join(model_stems)}", "invalid")
    if stems and any(s not in model_stems for s in stems):
        raise ApiError(422, f"stems {','.join(stems)}: the model's stems are {', '.join(model_stems)}", "invalid")


def _display_name(name: str | None) -> str:
    """The uploaded file's base name, printable and short (shown on the page and in download names only)."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = "".join(c for c in base if c.isprintable()).strip()[:200]
    return base or "upload"


def public(job: Job) -> dict[str, Any]:
    """A job as the API shows it.

    Args:
        job: a stored job.

    Returns:
        id, state, progress, error, filename, model, options, seconds, stems (names, once done), times and
        links (its events, each stem, the zip); no server paths.
    """
    base = f"/api/jobs/{job.id}"
    done = job.state == DONE
    return {"id": job.id, "state": job.state, "progress": round(job.progress, 4), "error": job.error,
            "filename": job.filename, "model": job.model, "options": job.options, "seconds": job.seconds,
            "stems": list(job.stems or {}) if done else [], "created": job.created, "started": job.started,
            "finished": job.finished, "links": {"self": base, "events": f"{base}/events",
                                                "stems": {s: f"{base}/stems/{s}" for s in (job.stems or {})} if done else {},
                                                "zip": f"{base}/zip" if done else None}}


class _UploadLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413 before it is read (by its
    Content-Length) or as soon as it goes past the limit (a chunked upload)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        message = f"the upload is too large: more than the server's limit of {(self.limit - FORM_OVERHEAD) / 1e6:g} MB"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await JSONResponse({"error": message, "code": "too_large"}, 413, {"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise ApiError(413, message, "too_large")
            return msg

        await self.app(scope, limited, send)


def _error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code or _CODES.get(status, "error")}, status, headers)


def create_app(config: ServeConfig) -> FastAPI:
    """The application. Its lifespan opens the data folder and starts the workers; ``app.state.server``
    holds them.

    Args:
        config: the server settings.

    Returns:
        The FastAPI app, to run with uvicorn (``stemforge serve``) or ``fastapi.testclient.TestClient``.
    """
    server = Server(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.start()
        janitor = asyncio.create_task(_expire_every_hour(server))
        try:
            yield
        finally:
            janitor.cancel()
            await run_in_threadpool(server.stop)

    app = FastAPIOffline(title="stemforge", version=__version__, lifespan=lifespan,
                  description="Upload a song, get its stems (vocals, drums, bass, other). Jobs run in worker "
                              "processes with the same engine as `stemforge separate`.")
    app.state.server = server
    app.add_middleware(_UploadLimit, limit=config.max_upload_bytes + FORM_OVERHEAD)
    bearer = HTTPBearer(auto_error=False, description="the token given to `stemforge serve --token`")

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if config.token is None:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), config.token.encode()):
            raise ApiError(401, "this server needs a token: send 'Authorization: Bearer <token>'"
                           if credentials is None else "wrong token", "unauthorized", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = getattr(exc, "code", None)
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if not isinstance(exc, ApiError):
            message = {404: f"no such page: {request.url.path}",
                       405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, message)
        return _error(exc.status_code, message, code, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        return _error(422, "; ".join(parts) or "invalid request", "invalid")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger(__name__).error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal server error ({type(exc).__name__}); see the server log", "internal")

    @app.exception_handler(StemforgeError)
    async def stemforge_error(request: Request, exc: StemforgeError) -> JSONResponse:
        return _error(422, str(exc), "invalid")

    api = [Depends(authorised)]

    @app.post("/api/jobs", status_code=201, dependencies=api, tags=["jobs"], summary="Upload a song to separate",
              responses={413: {"description": "too large or too long"}, 415: {"description": "not audio"},
                         422: {"description": "corrupt audio or bad options"}, 503: {"description": "queue full"}})
    def create_job(response: Response,
                   file: UploadFile = File(..., description="the song: wav, flac, ogg, aiff, mp3, m4a, ..."),
                   model: str = Form("default", description="a name from GET /api/models"),
                   stems: str | None = Form(None, description="comma-separated stems to write (default: all)"),
                   two_stems: str | None = Form(None, description="write STEM and no_STEM only (karaoke: vocals)"),
                   format: Literal["wav", "flac", "mp3"] = Form("wav", description="output format"),
                   bits: Literal["16", "24", "32f"] | None = Form(None, description="wav/flac bit depth (default 16)"),
                   mp3_bitrate: int | None = Form(None, description="kbit/s, mp3 only (default 320)"),
                   ) -> dict[str, Any]:
        options = {"fmt": format, "bits": bits or None, "mp3_bitrate": mp3_bitrate,
                   "stems": [s.strip() for s in stems.split(",") if s.strip()] if stems else None,
                   "two_stems": two_stems or None}
        job = server.add_job(file, model, options)
        response.headers["Location"] = f"/api/jobs/{job.id}"
        return public(job)

    @app.get("/api/jobs/{job_id}", dependencies=api, tags=["jobs"], summary="A job's state and progress")
    def get_job(job_id: str) -> dict[str, Any]:
        return public(server.job(job_id))

    @app.get("/api/jobs/{job_id}/events", dependencies=api, tags=["jobs"], response_class=StreamingResponse,
             summary="Server-sent events: the job (as GET /api/jobs/{id}) each time it changes, until it ends")
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        first = await run_in_threadpool(server.job, job_id)

        async def stream() -> AsyncIterator[str]:
            job: Job | None = first
            sent, quiet = None, time.monotonic()
            while True:
                if job is None or job.cancelled:
                    yield f"event: deleted\ndata: {json.dumps({'id': job_id})}\n\n"
                    return
                body = json.dumps(public(job))
                if body != sent:
                    event = "end" if job.state in (DONE, FAILED) else "progress"
                    yield f"event: {event}\ndata: {body}\n\n"
                    sent, quiet = body, time.monotonic()
                    if event == "end":
                        return
                elif time.monotonic() - quiet > KEEPALIVE:
                    yield ": keep-alive\n\n"
                    quiet = time.monotonic()
                await asyncio.sleep(EVENT_POLL)
                if await request.is_disconnected() or server.store is None:
                    return
                job = await run_in_threadpool(server.store.get, job_id)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/jobs/{job_id}/stems/{stem}", dependencies=api, tags=["files"], response_class=FileResponse,
             summary="One stem's file")
    def get_stem(job_id: str, stem: str) -> FileResponse:
        job = server.finished(job_id)
        if stem not in (job.stems or {}):
            raise ApiError(404, f"no stem {stem!r} in this job; it has {', '.join(job.stems or {})}", "not_found")
        path = server.config.jobs_dir / job.id / job.stems[stem]
        ext = path.suffix.lstrip(".")
        return FileResponse(path, media_type=MEDIA_TYPES.get(ext, "application/octet-stream"),
                            filename=f"{Path(job.filename).stem or 'track'}-{stem}.{ext}")

    @app.get("/api/jobs/{job_id}/zip", dependencies=api, tags=["files"], response_class=FileResponse,
             summary="Every stem of a job in one zip")
    def get_zip(job_id: str) -> FileResponse:
        job = server.finished(job_id)
        return FileResponse(server.zip_of(job), media_type="application/zip",
                            filename=f"{Path(job.filename).stem or 'track'}-stems.zip")

    @app.delete("/api/jobs/{job_id}", status_code=204, dependencies=api, tags=["jobs"],
                summary="Delete a job and its files (a running job is stopped)")
    def delete_job(job_id: str) -> Response:
        server.job(job_id)  # 404 for a bad or unknown id
        assert server.store is not None
        job = server.store.cancel(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r}", "not_found")
        if job.state != RUNNING:
            remove_folder(server.config.jobs_dir / job.id)
        return Response(status_code=204)

    @app.get("/api/models", dependencies=api, tags=["server"], summary="The models a job may use")
    def get_models() -> list[dict[str, Any]]:
        return server.models()

    @app.get("/api/server", tags=["server"], summary="Version, limits and whether a token is needed (no token needed)")
    def get_server() -> dict[str, Any]:
        c = server.config
        return {"version": __version__, "auth": c.token is not None, "formats": list(FORMATS),
                "limits": {"max_upload_mb": c.max_upload_mb, "max_seconds": c.max_seconds, "queue": c.queue,
                           "workers": c.workers, "keep_days": c.keep_days}}

    static = Path(str(resources.files("stemforge.web") / "static"))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static), name="static")
    return app


async def _expire_every_hour(server: Server) -> None:
    while True:
        await asyncio.sleep(3600)
        await run_in_threadpool(server.expire)


__all__ = ["ApiError", "Server", "create_app", "public"]
