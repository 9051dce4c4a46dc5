"""Ardour 7 sessions: a session folder that Ardour opens as it is.

``NAME/NAME.ardour`` (the session XML) and ``NAME/interchange/NAME/audiofiles/`` holding every track's audio
the way Ardour keeps imported audio: one 32-bit float mono WAV per channel (``drums%L.wav``, ``drums%R.wav``),
named in the XML by file name only, so the folder can move. Each stem is an audio track with one whole-file
region at 0, its name and colour; the original mix (converted to the session's rate and channel count) is one
more track, muted. All tracks feed the master bus, whose channel count is the stems' (a mono master goes to
both speakers).

Gain staging, so that the master bus (and ``ardour7-export`` of it) is the sum of the unmuted stems: faders,
trims and the master's volume at unity; region fades off (Ardour's default fades every region in and out over
64 samples, which puts an export of the test stems 0.53 off the sum at the edges) and transport fades off; a
stereo track keeps Ardour's equal-power stereo panner at centre and full width, which sends left to left and
right to right at unity; other layouts, and the master bus, have their panner bypassed (channel i to output i).
"""

from __future__ import annotations

import itertools
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from stemforge.audio import OutputExistsError, StreamResampler, downmix_matrix, folder_mode, open_audio
from stemforge.daw.session import Session, SessionTrack, check_session_name, staged_output
from stemforge.errors import AudioError

#: Ardour's session format version (Ardour 7.x).
SESSION_VERSION = "7002"
#: Ardour 7's time unit: superclock ticks per second (timepos_t "a<ticks>").
SUPERCLOCK_RATE = 282_240_000
#: Frames read per block while copying audio into the session.
BLOCK = 1 << 16


def session_folder(session: Session, directory: str | os.PathLike[str]) -> Path:
    """Where ``write_ardour`` puts the session: ``directory/NAME``."""
    return Path(directory) / check_session_name(session.name)


def superclock(frames: int, sample_rate: int) -> str:
    """A sample position as Ardour 7 writes it (``a`` + superclock ticks), rounded up so that Ardour's conversion
    back to samples (rounding down or to nearest) gives ``frames`` again at any sample rate."""
    return f"a{-(-frames * SUPERCLOCK_RATE // sample_rate)}"


def channel_file_names(name: str, channels: int) -> list[str]:
    """Ardour's names for a track's per-channel files: ``name.wav``, ``name%L/%R.wav``, ``name%a/%b/...``."""
    if channels == 1:
        return [f"{name}.wav"]
    if channels == 2:
        return [f"{name}%L.wav", f"{name}%R.wav"]
    return [f"{name}%{chr(ord('a') + c)}.wav" for c in range(channels)]


def write_ardour(session: Session, directory: str | os.PathLike[str], force: bool = False) -> Path:
    """Write ``session`` as an Ardour 7 session folder ``directory/NAME``.

    The folder is built hidden beside its target and renamed into place when complete: an error or an
    interruption leaves nothing behind.

    Args:
        session: the tracks (stems of one rate, layout and length; the mix may differ and is converted).
        directory: the folder that receives the session folder.
        force: replace an existing session folder.

    Returns:
        The session folder (holding ``NAME.ardour``).

    Raises:
        OutputExistsError: the session folder exists (without ``force``).
        AudioError: a track cannot be read or the session cannot be written.
    """
    target = session_folder(session, directory)
    if os.path.lexists(target) and not force:
        raise OutputExistsError(f"{target}: already exists (use --force to replace it)")
    with staged_output(target, directory=True, force=force) as staged:
        os.chmod(staged, folder_mode())  # mkdtemp makes 0700 folders
        audio = staged / "interchange" / session.name / "audiofiles"
        try:
            for sub in (audio, audio.parent / "midifiles", staged / "peaks", staged / "export", staged / "analysis",
                        staged / "dead", staged / "plugins", staged / "externals"):
                sub.mkdir(parents=True)
        except OSError as exc:
            raise AudioError(f"{target}: cannot write the session ({exc.strerror or exc})") from exc
        used: set[str] = set()
        written = []
        for track in session.tracks:
            base = _unique_base(track.name, used)
            files = channel_file_names(base, session.channels)
            frames = _copy_audio(track, audio, files, session.sample_rate, session.channels)
            written.append((track, files, frames))
        xml = session_xml(session, written)
        try:
            (staged / f"{session.name}.ardour").write_bytes(xml)
        except OSError as exc:
            raise AudioError(f"{target}: cannot write the session ({exc.strerror or exc})") from exc
    return target


def _unique_base(name: str, used: set[str]) -> str:
    """A file-name base for a track: its name made path-safe, unique among ``used`` (which it joins)."""
    base = "".join("_" if ch in '/\\\0:*?"<>|%' else ch for ch in name) or "track"
    candidate = base
    for n in itertools.count(1):
        if candidate.lower() not in used:
            break
        candidate = f"{base}-{n}"
    used.add(candidate.lower())
    return candidate


def _copy_audio(track: SessionTrack, folder: Path, files: list[str], rate: int, channels: int) -> int:
    """Decode ``track`` into one float mono WAV per channel at ``rate`` (the mix is converted first).

    Returns:
        The frames written per file.
    """
    import soundfile as sf

    reader = open_audio(track.path)
    writers = []
    try:
        info = reader.info
        matrix = None if info.channels == channels else downmix_matrix(info.channels, channels)
        resampler = StreamResampler(info.sample_rate, rate, channels)
        for name in files:
            try:
                writers.append(sf.SoundFile(str(folder / name), "w", rate, 1, "FLOAT", format="WAV"))
            except (sf.LibsndfileError, OSError, RuntimeError) as exc:
                raise AudioError(f"{folder / name}: cannot write ({exc})") from exc
        frames = 0

        def put(block: np.ndarray) -> None:
            nonlocal frames
            for c, writer in enumerate(writers):
                writer.write(np.ascontiguousarray(block[c], dtype=np.float32))
            frames += block.shape[1]

        try:
            for block in reader.blocks(BLOCK):
                if matrix is not None:
                    block = matrix @ block
                put(resampler.process(block))
            put(resampler.process(np.zeros((channels, 0), np.float32), last=True))
        except (sf.LibsndfileError, OSError, RuntimeError) as exc:
            raise AudioError(f"{folder}: cannot write {track.name}'s audio ({exc})") from exc
        if not frames:
            raise AudioError(f"{track.path}: contains no audio samples at {rate} Hz")
        return frames
    finally:
        for writer in writers:
            writer.close()
        reader.close()


class _Ids:
    """Ardour object ids: one counter for the whole session file."""

    def __init__(self, start: int = 100) -> None:
        self.next = start

    def __call__(self) -> str:
        self.next += 1
        return str(self.next)


def _colour(rgb: tuple[int, int, int]) -> str:
    """Ardour's colour attribute: 0xRRGGBBAA as a decimal unsigned integer."""
    r, g, b = rgb
    return str((r << 24) | (g << 16) | (b << 8) | 0xFF)


def _sub(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()})


def _controllable(parent: ET.Element, ids: _Ids, name: str, value: str, flags: str = "", **extra: str) -> None:
    _sub(parent, "Controllable", name=name, id=ids(), flags=flags, value=value, **extra)


def _io(parent: ET.Element, ids: _Ids, name: str, direction: str, channels: int,
        connect: list[list[str]] | None = None) -> None:
    """An IO with ``channels`` audio ports, port ``c`` connected to each port named in ``connect[c]``."""
    io = _sub(parent, "IO", name=name, id=ids(), direction=direction, default_type="audio")
    way = "in" if direction == "Input" else "out"
    for c in range(channels):
        port = _sub(io, "Port", type="audio", name=f"{name}/audio_{way} {c + 1}")
        for other in connect[c] if connect else []:
            _sub(port, "Connection", other=other)


def _amp(parent: ET.Element, ids: _Ids, kind: str) -> None:
    """A unity trim (``kind="trim"``) or fader (``kind="amp"``) processor."""
    proc = _sub(parent, "Processor", id=ids(), name="Amp", active="1", user_latency="0", use_user_latency="0",
                type=kind)
    auto = _sub(proc, "Automation")
    _sub(auto, "AutomationList", automation_id="gain" if kind == "amp" else "trim", id=ids(),
         interpolation_style="Exponential" if kind == "amp" else "Logarithmic", time_domain="AudioTime", state="Off")
    _controllable(proc, ids, "gaincontrol" if kind == "amp" else "trimcontrol", "1", "GainLike")


def _route(routes: ET.Element, ids: _Ids, name: str, channels: int, colour: str, order: int, master: bool,
           muted: bool = False, playlist: str | None = None) -> str:
    """One route (the master bus or an audio track) at unity gain; returns its id."""
    route_id = ids()
    attrs = dict(version=SESSION_VERSION, id=route_id, name=name, default_type="audio",
                 strict_io="1" if master else "0", active="1", denormal_protection="0",
                 meter_point="MeterOutput" if master else "MeterPostFader", disk_io_point="DiskIOPreFader",
                 meter_type="MeterK14" if master else "MeterPeak")
    if master:
        attrs["volume_applies_to_output"] = "1"
    else:
        attrs.update(audio_playlist=playlist, saved_meter_point="MeterPostFader", alignment_choice="Automatic",
                     mode="Normal")
    route = _sub(routes, "Route", **attrs)
    _sub(route, "PresentationInfo", order=str(order), flags="MasterOut,OrderSet" if master else "AudioTrack,OrderSet",
         color=colour)
    _controllable(route, ids, "solo", "0", "Toggle,RealTime", self_solo="0", soloed_by_upstream="0",
                  soloed_by_downstream="0")
    _controllable(route, ids, "solo-iso", "0", "Toggle,RealTime", solo_isolated="0")
    _controllable(route, ids, "solo-safe", "0", "Toggle", solo_safe="0")
    _io(route, ids, name, "Input", channels)
    if master:  # to the sound card, as Ardour connects a new session's master bus; mono to both speakers
        speakers = [["system:playback_1", "system:playback_2"]] if channels == 1 else \
            [[f"system:playback_{c + 1}"] for c in range(channels)]
        _io(route, ids, name, "Output", channels, speakers)
    else:
        _io(route, ids, name, "Output", channels, [[f"Master/audio_in {c + 1}"] for c in range(channels)])
    _sub(route, "MuteMaster", mute_point="PostFader,Listen,Main", muted="1" if muted else "0")
    _controllable(route, ids, "mute", "1" if muted else "0", "Toggle,RealTime")
    _controllable(route, ids, "phase", "0", "Toggle", phase_invert="0" * channels)
    if master:
        _controllable(route, ids, "mastervolume", "1", "GainLike,NotAutomatable")
    pannable = _sub(route, "Pannable")
    for control, value in (("pan-azimuth", "0.5"), ("pan-width", "1" if channels == 2 and not master else "0"),
                           ("pan-elevation", "0"), ("pan-frontback", "0"), ("pan-lfe", "0")):
        _controllable(pannable, ids, control, value)
    if not master:
        _sub(route, "Processor", id=ids(), name=f"recorder:{name}", active="1", user_latency="0",
             use_user_latency="0", type="diskwriter", record_safe="0")
        _sub(route, "Processor", id=ids(), name=f"player:{name}", active="1", user_latency="0",
             use_user_latency="0", type="diskreader")
    _sub(route, "Processor", id=ids(), name="Polarity", active="1", user_latency="0", use_user_latency="0",
         type="polarity")
    _amp(route, ids, "trim")
    _amp(route, ids, "amp")
    _sub(route, "Processor", id=ids(), name=f"meter-{name}", active="1", user_latency="0", use_user_latency="0",
         type="meter")
    outs = _sub(route, "Processor", id=ids(), name=name, active="1", user_latency="0", use_user_latency="0",
                own_input="1", own_output="0", output=name, type="main-outs", role="Main")
    # A stereo track keeps its (unity at full width) stereo panner; the master bus and other layouts pass
    # channel i to output i untouched.
    _sub(outs, "PannerShell", bypassed="0" if channels == 2 and not master else "1", user_panner="",
         linked_to_route="1")
    _sub(route, "Slavable")
    if not master:
        _controllable(route, ids, "monitor", "0", "RealTime", monitoring="")
        _controllable(route, ids, "rec-safe", "0", "Toggle,RealTime")
        _controllable(route, ids, "rec-enable", "0", "Toggle,RealTime")
    return route_id


def session_xml(session: Session, written: list[tuple[SessionTrack, list[str], int]]) -> bytes:
    """The ``NAME.ardour`` document.

    Args:
        session: the session (name, rate, channels, tempo).
        written: for each track in order, its per-channel file names in ``audiofiles/`` and their length in frames.

    Returns:
        The XML, UTF-8 encoded.
    """
    ids = _Ids()
    rate = session.sample_rate
    root = ET.Element("Session", {"version": SESSION_VERSION, "name": session.name, "sample-rate": str(rate),
                                  "session-range-is-free": "0"})
    _sub(root, "ProgramVersion", created_with="stemforge", modified_with="stemforge")
    config = _sub(root, "Config")
    for option, value in (("native-file-data-format", "FormatFloat"), ("native-file-header-format", "WAVE"),
                          ("use-region-fades", "0"), ("use-transport-fades", "0"), ("use-monitor-fades", "0")):
        _sub(config, "Option", name=option, value=value)
    _sub(root, "Metadata")
    sources = _sub(root, "Sources")
    regions = _sub(root, "Regions")
    locations = _sub(root, "Locations")
    length = max(frames for _, _, frames in written)
    _sub(locations, "Location", id=ids(), name="session", start="a0", end=superclock(length, rate),
         flags="IsSessionRange", locked="0", timestamp="0", cue="0")
    _sub(root, "Bundles")
    routes = _sub(root, "Routes")
    playlists = _sub(root, "Playlists")
    _sub(root, "UnusedPlaylists")
    _sub(root, "RouteGroups")
    _route(routes, ids, "Master", session.channels, "0", 0, master=True)
    for order, (track, files, frames) in enumerate(written, start=1):
        source_ids = []
        for channel, file in enumerate(files):
            source_ids.append(ids())
            _sub(sources, "Source", name=file, type="audio", flags="", id=source_ids[-1], captured_for=track.name,
                 take_id="", channel="0", origin=track.path.name, natural_position="a0")
        region_attrs = dict(name=track.name, start="a0", length=f"{superclock(frames, rate)}@a0", position="a0",
                            muted="0", opaque="1", locked="0", video_locked="0", automatic="0", whole_file="1",
                            import_="0", external="0", sync_marked="0", left_of_split="0", right_of_split="0",
                            hidden="0", position_locked="0", valid_transients="0", sync_position="a0",
                            ancestral_start="a0", ancestral_length="a0@a0", stretch="1", shift="1",
                            layering_index="0", envelope_active="0", default_fade_in="0", default_fade_out="0",
                            fade_in_active="0", fade_out_active="0", scale_amplitude="1", type="audio",
                            first_edit="nothing", channels=str(len(files)))
        for c, sid in enumerate(source_ids):
            region_attrs[f"source_{c}"] = sid
            region_attrs[f"master_source_{c}"] = sid
        _sub(regions, "Region", id=ids(), **region_attrs)  # the whole-file region the playlist's one comes from
        playlist_id = ids()
        route_id = _route(routes, ids, track.name, session.channels, _colour(track.colour), order, master=False,
                          muted=track.muted, playlist=playlist_id)
        playlist = _sub(playlists, "Playlist", id=playlist_id, name=track.name, type="audio", orig_track_id=route_id,
                        shared_with_ids="", pgroup_id="", combine_ops="0")
        _sub(playlist, "Region", id=ids(), **{**region_attrs, "name": f"{track.name}.1", "whole_file": "0"})
    click = _sub(root, "Click")
    _io(click, ids, "Click", "Output", 2, [["system:playback_1"], ["system:playback_2"]])
    _amp(click, ids, "amp")
    tempo_map = _sub(root, "TempoMap", superclocks_per_second=str(SUPERCLOCK_RATE))
    tempos = _sub(tempo_map, "Tempos")
    bpm = f"{session.tempo:.10g}" if session.tempo is not None else "120"
    _sub(tempos, "Tempo", npm=bpm, enpm=bpm, note_type="4", type="Tempo::Constant", active="1",
         locked_to_meter="0", continuing="0", sclock="0", quarters="0:0", bbt="1|1|0", omega="0")
    meters = _sub(tempo_map, "Meters")
    _sub(meters, "Meter", note_value="4", divisions_per_bar="4", sclock="0", quarters="0:0", bbt="1|1|0")
    _sub(tempo_map, "MusicTimes")
    root.set("id-counter", str(ids.next + 1))
    root.set("name-counter", "1")
    root.set("event-counter", "0")
    root.set("vca-counter", "1")
    ET.indent(root, "  ")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"
