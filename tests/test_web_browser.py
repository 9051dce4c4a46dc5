"""The page at ``/`` in a real headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright).

A ``stemforge serve`` process is started on 127.0.0.1; the test drops ``examples/example.flac`` on the page,
waits for the stems, plays them, mutes and solos stems, and downloads one stem, the zip and the remix,
checking each file against the server's. Screenshots of every step go to ``<tmp_path>/screenshots/``.
"""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'stemforge[web]')")

from web_helpers import ServeProcess  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "example.flac"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)")


@pytest.fixture
def server(tmp_path: Path):
    serve = ServeProcess(tmp_path / "data", tmp_path / "server.log", "--workers", "1").wait_ready()
    yield serve
    serve.stop()


@pytest.fixture
def page(tmp_path: Path):
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            accept_downloads=True, viewport={"width": 1000, "height": 820})
        try:
            yield context.new_page()
        finally:
            context.close()


def gains(page) -> dict[str, float]:
    return page.evaluate("Object.fromEntries(stemforge.stems.map(s => [s.name, s.gain.gain.value]))")


def test_drop_play_mute_and_download(server: ServeProcess, page, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    step = iter(range(1, 100))

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{next(step):02d}-{name}.png"), full_page=True)

    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#model option").count() >= 1
    shot("start")

    # A file that is not audio: refused, the reason on the page, the upload box back.
    page.set_input_files("#file", files=[{"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"hello " * 300}])
    page.wait_for_selector("#error:not([hidden])")
    assert "not an audio file" in page.inner_text("#error")
    assert page.is_visible("#drop")
    shot("refused")

    # Drag and drop the example onto the drop zone.
    data = base64.b64encode(EXAMPLE.read_bytes()).decode()
    transfer = page.evaluate_handle("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "example.flac", {type: "audio/flac"}));
        return dt;
    }""", data)
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#job:not([hidden])")
    assert page.is_hidden("#error")
    shot("uploading")
    page.wait_for_selector("body[data-job-state='running'], body[data-job-state='done']", timeout=120_000)
    shot("separating")
    page.wait_for_selector("body[data-mixer='ready']", timeout=120_000)
    assert page.inner_text("#job-state") == "done"
    stems = page.eval_on_selector_all(".stem", "rows => rows.map(r => r.dataset.stem)")
    assert stems == ["drums", "bass", "other", "vocals"]
    inked = page.evaluate("""stemforge.stems.map(s => {
        const c = s.canvas, px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < px.length; i += 4) n += px[i] > 0; return n / (c.width * c.height); })""")
    assert all(0.01 < share < 1 for share in inked), inked  # a waveform per stem, not blank and not a block
    assert page.evaluate("stemforge.duration") == pytest.approx(sf.info(EXAMPLE).duration, abs=0.01)
    shot("separated")

    page.click("#play")
    page.wait_for_function("Number(document.body.dataset.position) > 0.5", timeout=30_000)
    assert page.evaluate("stemforge.playing && stemforge.ctx.state === 'running'")
    assert page.evaluate("stemforge.sources.length") == 4
    assert page.get_attribute("#play", "aria-label") == "pause"
    shot("playing")

    page.click(".stem[data-stem='vocals'] .mute")
    assert page.get_attribute(".stem[data-stem='vocals'] .mute", "aria-pressed") == "true"
    page.wait_for_function("stemforge.stems.find(s => s.name === 'vocals').gain.gain.value === 0")
    assert gains(page) == {"drums": 1, "bass": 1, "other": 1, "vocals": 0}
    shot("vocals-muted")
    page.click(".stem[data-stem='drums'] .solo")
    # Wait for every stem's gain, not only bass's: another may be set a moment later (seen once in a fresh clone).
    page.wait_for_function("stemforge.stems.every(s => s.gain.gain.value === (s.name === 'drums' ? 1 : 0))")
    assert gains(page) == {"drums": 1, "bass": 0, "other": 0, "vocals": 0}
    shot("drums-solo")
    page.click(".stem[data-stem='drums'] .solo")
    page.wait_for_function("stemforge.stems.find(s => s.name === 'bass').gain.gain.value === 1")
    assert gains(page) == {"drums": 1, "bass": 1, "other": 1, "vocals": 0}
    page.click("#play")  # pause
    position = float(page.get_attribute("body", "data-position"))
    page.wait_for_timeout(300)
    assert float(page.get_attribute("body", "data-position")) == position  # paused means paused

    job_id = page.evaluate("stemforge.job.id")
    folder = tmp_path / "data" / "jobs" / job_id / "stems" / "default"
    with page.expect_download() as download:
        page.click("#zip")
    zipped = tmp_path / "stems.zip"
    download.value.save_as(zipped)
    assert download.value.suggested_filename == "example-stems.zip"
    with zipfile.ZipFile(zipped) as archive:
        assert sorted(archive.namelist()) == [f"example/{s}.wav" for s in sorted(stems)]
        for stem in stems:
            assert archive.read(f"example/{stem}.wav") == (folder / f"{stem}.wav").read_bytes()
    shot("zip-downloaded")

    with page.expect_download() as download:
        page.click(".stem[data-stem='bass'] .download")
    assert download.value.suggested_filename == "example-bass.wav"
    assert Path(download.value.path()).read_bytes() == (folder / "bass.wav").read_bytes()

    with page.expect_download() as download:  # the mix as heard: vocals muted
        page.click("#remix")
    assert download.value.suggested_filename == "example-mix.wav"
    remix, rate = sf.read(io.BytesIO(Path(download.value.path()).read_bytes()), dtype="float32")
    expected = sum(sf.read(folder / f"{s}.wav", dtype="float32")[0] for s in ("drums", "bass", "other"))
    assert rate == 44100 and remix.shape == expected.shape
    # 16-bit WAV: the page clamps at full scale, and the example is mastered loud (its stems sum past 1.0).
    assert np.abs(remix - np.clip(expected, -1.0, 1.0)).max() < 3 / 32768
    vocals = sf.read(folder / "vocals.wav", dtype="float32")[0]
    assert np.abs(vocals).max() > 0.01  # so leaving it out was a real difference

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
    assert page.evaluate("document.querySelector('.stem .mute').getBoundingClientRect().width") >= 32
    shot("phone")
    assert errors == []



def test_api_docs_render_without_internet(server: ServeProcess, page) -> None:
    """``/docs`` draws the API's operations in a browser that can reach nothing but the server (this machine has
    no internet; a page whose scripts come from a CDN stays blank)."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{server.url}/docs")
    page.get_by_text("/api/jobs/{job_id}/zip", exact=True).wait_for(timeout=20_000)
    assert page.locator(".opblock").count() >= 7
    assert requested and all(url.startswith(server.url) for url in requested)
