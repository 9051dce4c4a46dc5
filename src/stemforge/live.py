"""Live separation inside a JACK graph: a stereo input, one stereo output pair per stem, per-stem gain and mute.

``LiveSeparator(StreamingSeparator(...), LiveOptions(...)).start()`` opens a JACK client (the ``JACK-Client``
package; JACK2 or PipeWire's JACK), checks the server's sample rate and period against the model, registers
``in_L``/``in_R`` and ``<stem>_L``/``<stem>_R`` ports, activates and makes the connections asked for. Each JACK
period runs ``StreamingSeparator.process`` on the input block inside the process callback, so the outputs are
the offline separation delayed by ``latency_samples`` (46.4 ms with ``lowlatency``), sample for sample. Gains and
mutes apply per stem at the output; xruns are counted (``xruns``). ``stemforge live`` is the command around it.

Every failure to start is a one-line ``LiveError``: no JACK library, no server, an unknown port, a sample-rate
mismatch, or a period the model cannot separate in time (measured before activating: ``check_block``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import numpy as np

from stemforge.errors import StemforgeError
from stemforge.stream import StreamingSeparator

logger = logging.getLogger(__name__)

#: Fraction of a period the separation may take (worst block measured); the rest is headroom for the graph.
LOAD_LIMIT = 0.8


class LiveError(StemforgeError):
    """The live client cannot start or keep running (one line, said to the user as is)."""


@dataclasses.dataclass
class LiveOptions:
    """JACK client settings.

    ``connect_in``: two port names (or ``["physical"]``: the first two physical capture ports) to feed ``in_L`` /
    ``in_R``. ``connect_out``: stem -> port names (``"physical"``: the first two physical playback ports) each
    stem's pair is connected to. ``gains_db`` / ``muted`` set the start-up mix.
    """

    client_name: str = "stemforge"
    server: str | None = None  # JACK server name (None: $JACK_DEFAULT_SERVER or "default")
    connect_in: list[str] = dataclasses.field(default_factory=list)
    connect_out: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    gains_db: dict[str, float] = dataclasses.field(default_factory=dict)
    muted: list[str] = dataclasses.field(default_factory=list)
    check: bool = True  # measure the model at the server's period before activating


def _jack() -> Any:
    """The ``jack`` module, or a one-line error (not installed, or no libjack on the system)."""
    try:
        import jack
    except ImportError:
        raise LiveError("stemforge live needs the JACK-Client package: pip install 'stemforge[live]'") from None
    except OSError as exc:  # JACK-Client is there but libjack is not
        raise LiveError(f"the JACK library is missing ({exc}); install JACK2 or PipeWire's JACK "
                        "(Debian: jackd2 or pipewire-jack)") from None
    # libjack prints its own complaints ("Cannot connect to server socket ...") to stderr: route them to the log,
    # so a failure is the one line of our LiveError.
    jack.set_error_function(lambda message: logger.debug("libjack: %s", message))
    jack.set_info_function(lambda message: logger.debug("libjack: %s", message))
    return jack


def check_block(separator: StreamingSeparator, blocksize: int, seconds: float = 0.5) -> float:
    """Worst CPU time to separate one block of ``blocksize`` samples, as a fraction of the period.

    Feeds noise block by block (a warm-up of 0.1 s first, then ``seconds`` and at least the latency plus a block,
    so a whole segment runs in segment mode) and times each ``process`` call in CPU time of the calling thread,
    so other programs loading the machine do not count (run torch with one thread, as ``stemforge live`` does).
    The separator is reset afterwards.

    Args:
        separator: the stream to measure.
        blocksize: samples per block (the JACK period).
        seconds: how much audio to time at least.

    Returns:
        max(block CPU time) / (blocksize / sample_rate); above 1 the model cannot keep up at this period.
    """
    rng = np.random.default_rng(0)
    rate = separator.sample_rate
    warmup = int(0.1 * rate)
    total = warmup + max(int(seconds * rate), separator.latency_samples + blocksize)
    worst = 0.0
    for start in range(0, total, blocksize):
        block = (0.1 * rng.standard_normal((separator.channels, blocksize))).astype(np.float32)
        begin = time.thread_time()
        separator.process(block)
        if start >= warmup:
            worst = max(worst, time.thread_time() - begin)
    separator.reset()
    return worst / (blocksize / rate)


class LiveSeparator:
    """A JACK client separating its stereo input into one stereo output pair per stem (see the module docstring).

    Args:
        separator: the stream (any model; ``frames`` mode for low latency).
        options: client name, server, connections, start-up gains and mutes.

    Attributes:
        xruns: xruns the server reported since ``start``.
        xrun_periods: ``blocks`` at each of them.
        blocks: periods processed.
        gains: stem -> linear gain (change at any time; read once per period).
        muted: stems currently muted.
        load: the last period's separation time as a fraction of the period.
    """

    def __init__(self, separator: StreamingSeparator, options: LiveOptions | None = None) -> None:
        if separator.channels != 2:
            raise LiveError(f"the live client is stereo; the model has {separator.channels} channels")
        self.separator = separator
        self.options = options or LiveOptions()
        unknown = [s for s in [*self.options.gains_db, *self.options.muted, *self.options.connect_out]
                   if s not in separator.sources]
        if unknown:
            raise LiveError(f"unknown stem {unknown[0]!r}; the model's stems are {', '.join(separator.sources)}")
        self.gains = {s: 10 ** (self.options.gains_db.get(s, 0.0) / 20) for s in separator.sources}
        self.muted = set(self.options.muted)
        self.xruns = 0
        self.xrun_periods: list[int] = []  # the period count at each xrun (which part of a session had them)
        self.blocks = 0
        self.load = 0.0
        self.error: str | None = None
        #: The server's frame time at the start of the first period processed (aligns recordings in tests).
        self.first_frame: int | None = None
        self.client: Any = None
        self._lock = threading.Lock()

    @property
    def latency_samples(self) -> int:
        return self.separator.latency_samples

    # ----- life cycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the client, check rate and period, register ports, activate, connect. One-line ``LiveError``s."""
        jack = _jack()
        opts = self.options
        try:
            client = jack.Client(opts.client_name, no_start_server=True, servername=opts.server)
        except jack.JackOpenError:
            where = f"JACK server {opts.server!r}" if opts.server else "a JACK server"
            raise LiveError(f"cannot connect to {where}: is it running? (start one, e.g. 'jackd -d alsa', or use "
                            "PipeWire's JACK; --server NAME picks a named server)") from None
        self.client = self._jack_client = client
        try:
            rate, block = client.samplerate, client.blocksize
            if rate != self.separator.sample_rate:
                raise LiveError(f"the JACK server runs at {rate} Hz but the model separates at "
                                f"{self.separator.sample_rate} Hz; restart JACK with -r {self.separator.sample_rate}")
            if opts.check:
                load = check_block(self.separator, block)
                if load > LOAD_LIMIT:
                    raise LiveError(f"a {block}-sample period is too small for this model: separating one block takes "
                                    f"up to {load * block / rate * 1000:.1f} ms of the {block / rate * 1000:.1f} ms "
                                    f"period ({self.separator.mode} mode); use a larger period (jackd -p) or a "
                                    "low-latency model (-n lowlatency)")
            self.inputs = [client.inports.register(f"in_{side}") for side in "LR"]
            self.outputs = {s: [client.outports.register(f"{s}_{side}") for side in "LR"] for s in self.separator.sources}
            client.set_process_callback(self._process)
            client.set_xrun_callback(self._xrun)
            client.set_shutdown_callback(self._shutdown)
            self.separator.reset()
            client.activate()
            self._connect(jack)
        except BaseException:
            self.stop()
            raise
        logger.info("JACK client %r: %d Hz, %d-sample period, latency %d samples", client.name, rate, block,
                    self.latency_samples)

    def stop(self) -> None:
        """Deactivate and close the client (safe to call twice)."""
        client, self.client = self.client, None
        if client is not None:
            try:
                client.deactivate()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            client.close()

    def __enter__(self) -> "LiveSeparator":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _port(self, name: str, is_input: bool) -> Any:
        """A port by name for an auto-connection, or a one-line error naming the ports there are."""
        ports = self.client.get_ports(is_audio=True, is_input=is_input, is_output=not is_input)
        for port in ports:
            if port.name == name:
                return port
        names = ", ".join(p.name for p in ports) or "none"
        kind = "input" if is_input else "output"
        raise LiveError(f"unknown JACK port {name!r}; audio {kind} ports: {names}")

    def _physical(self, is_input: bool) -> list[str]:
        ports = self.client.get_ports(is_audio=True, is_physical=True, is_input=is_input, is_output=not is_input)
        if not ports:
            raise LiveError(f"the JACK server has no physical {'playback' if is_input else 'capture'} ports")
        return [p.name for p in ports[:2]] * (2 if len(ports) == 1 else 1)

    def _connect(self, jack: Any) -> None:
        sources = self.options.connect_in
        if sources == ["physical"]:
            sources = self._physical(is_input=False)
        if sources:
            if len(sources) != 2:
                raise LiveError(f"--connect-in needs two ports (left, right) or 'physical', got {len(sources)}")
            for name, port in zip(sources, self.inputs):
                self.client.connect(self._port(name, is_input=False), port)
        for stem, targets in self.options.connect_out.items():
            if targets == ["physical"]:
                targets = self._physical(is_input=True)
            if len(targets) != 2:
                raise LiveError(f"--connect-out {stem}=... needs two ports (left, right) or 'physical'")
            for port, name in zip(self.outputs[stem], targets):
                self.client.connect(port, self._port(name, is_input=True))

    # ----- JACK callbacks (the server's thread) -------------------------------------------------------------
    def _process(self, frames: int) -> None:
        start = time.perf_counter()
        try:
            if self.first_frame is None:
                self.first_frame = self._jack_client.last_frame_time
            block = np.stack([port.get_array() for port in self.inputs])
            stems = self.separator.process(block)
            for stem, ports in self.outputs.items():
                gain = 0.0 if stem in self.muted else self.gains[stem]
                for channel, port in enumerate(ports):
                    np.multiply(stems[stem][channel], gain, out=port.get_array())
        except Exception as exc:  # noqa: BLE001 - reported by the main thread as one line; silence meanwhile
            self.error = self.error or f"separation failed in the JACK callback: {exc}"
            for ports in self.outputs.values():
                for port in ports:
                    port.get_array().fill(0.0)
        self.blocks += 1
        self.load = (time.perf_counter() - start) / (frames / self.separator.sample_rate)

    def _xrun(self, delay_usecs: float) -> None:
        self.xruns += 1
        self.xrun_periods.append(self.blocks)

    def _shutdown(self, status: Any, reason: str) -> None:
        self.error = self.error or f"the JACK server shut the client down: {reason}"

    # ----- mixer ------------------------------------------------------------------------------------------
    def set_gain_db(self, stem: str, db: float) -> None:
        """Set a stem's output gain in dB (clamped to -60..+12)."""
        self.gains[stem] = 10 ** (max(-60.0, min(12.0, db)) / 20)

    def gain_db(self, stem: str) -> float:
        return 20 * float(np.log10(max(self.gains[stem], 1e-6)))

    def toggle_mute(self, stem: str) -> None:
        with self._lock:
            self.muted.symmetric_difference_update({stem})


__all__ = ["LOAD_LIMIT", "LiveError", "LiveOptions", "LiveSeparator", "check_block"]
