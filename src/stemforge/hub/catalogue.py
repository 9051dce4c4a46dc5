"""The model zoo's catalogue, as data: the public checkpoints stemforge can run and where they come from.

Every fact is quoted from a public source, named in the entry (demucs 4.1.0: ``demucs/remote/files.txt``, the
bag yamls, ``pretrained.ROOT_URL`` and its README; openunmix 1.3.0: the URLs in ``openunmix/__init__.py`` and
its README; RoFormers: ZFTurbo/Music-Source-Separation-Training ``docs/pretrained_models.md`` and its configs;
MDX-Net: UVR's ``model_data.json``). Fields no source states are ``None`` and shown as "unknown". demucs and
openunmix file names embed a sha256 prefix; other hashes say where they were published
(``ZooFile.sha256_source``). ``ZooEntry.architecture`` is the ``StemModel.architecture`` of the model it loads
as (``stemforge.models.registry``). Plain data: importing this module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import json

from stemforge.stems import FOUR_STEMS, SIX_STEMS


@dataclasses.dataclass(frozen=True)
class ZooFile:
    """One file of a checkpoint. ``sha256`` may be a prefix (as published in the file name)."""

    url: str
    sha256: str | None
    size: int | None = None
    #: Who published ``sha256`` (None: the file name itself, as demucs and openunmix do).
    sha256_source: str | None = None

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """A public checkpoint: what it is, how well it is said to do, and where it comes from."""

    name: str
    architecture: str
    stems: tuple[str, ...]
    files: tuple[ZooFile, ...]
    licence: str | None
    sdr: str | None  # as published, e.g. "9.0 (mean of 4 stems)"; None = not published in our sources
    sdr_source: str | None
    #: Extra file written next to the downloads (a demucs bag yaml, MDX-Net settings), as (file name, text).
    manifest: tuple[str, str] | None = None
    notes: str = ""
    #: The file ``load`` opens inside the entry's folder (None: the manifest, else the folder itself).
    load_file: str | None = None
    #: The config that goes with ``load_file`` (a RoFormer YAML), handed to the loader rather than searched for.
    config_file: str | None = None

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]


_DEMUCS_ROOT = "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"
_DEMUCS_LICENCE = "MIT (demucs repository licence; no separate weights licence stated)"
_DEMUCS_README = "demucs 4.1.0 README (PyPI description)"
_SOURCES4 = FOUR_STEMS


def _demucs(name: str, files: list[str], yaml_text: str, sdr: str | None, stems: tuple[str, ...] = _SOURCES4,
            notes: str = "", architecture: str = "htdemucs") -> ZooEntry:
    return ZooEntry(
        name=name, architecture=architecture, stems=stems,
        files=tuple(ZooFile(_DEMUCS_ROOT + f, f.rsplit("-", 1)[1].split(".")[0]) for f in files),
        licence=_DEMUCS_LICENCE, sdr=sdr, sdr_source=_DEMUCS_README if sdr else None,
        manifest=(f"{name}.yaml", yaml_text), notes=notes,
    )


def _umx(name: str, record: str, files: dict[str, str], sdr: str, licence: str | None) -> ZooEntry:
    return ZooEntry(
        name=name, architecture="openunmix", stems=tuple(files),
        files=tuple(ZooFile(f"https://zenodo.org/records/{record}/files/{f}", f.rsplit("-", 1)[1].split(".")[0])
                    for f in files.values()),
        licence=licence, sdr=sdr, sdr_source="openunmix 1.3.0 README, 'Scores (Median of frames, Median of tracks)'",
    )


_MSST = "ZFTurbo/Music-Source-Separation-Training"
_MSST_TABLE = f"{_MSST} docs/pretrained_models.md @494726d3"
_MSST_RAW = "https://raw.githubusercontent.com/ZFTurbo/Music-Source-Separation-Training/"
_UVR_RELEASE = "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/"
_NO_WEIGHTS_LICENCE = "not stated (no licence given for the weights)"


def _roformer(name: str, stems: tuple[str, str], ckpt: ZooFile, config_path: str, sdr: str,
              sdr_dataset: str, licence: str | None = _NO_WEIGHTS_LICENCE, notes: str = "") -> ZooEntry:
    """A community RoFormer: the .ckpt plus its YAML, the YAML pinned to the commit it was read at.

    A commit-pinned raw URL cannot change, so the YAML has no separate hash.
    """
    config = ZooFile(_MSST_RAW + config_path, None, sha256_source="none published; the URL is pinned to a git commit")
    return ZooEntry(name=name, architecture="compat_roformer", stems=stems, files=(ckpt, config), licence=licence,
                    sdr=sdr, sdr_source=f"{_MSST_TABLE}, {sdr_dataset}",
                    notes=notes, load_file=ckpt.name, config_file=config.name)


def _mdxnet(name: str, file: str, sha256: str | None, sha256_source: str | None, size: int | None,
            target: str, complement: str, n_fft: int, dim_f: int, dim_t_set: int, compensate: float,
            sdr: str | None = None, sdr_source: str | None = None, notes: str = "") -> ZooEntry:
    """A UVR MDX-Net ONNX graph with the settings UVR's model_data.json gives it, written beside it as JSON."""
    settings = {"n_fft": n_fft, "hop": 1024, "dim_f": dim_f, "dim_t": 2 ** dim_t_set, "compensate": compensate,
                "target": target, "complement": complement}
    return ZooEntry(name=name, architecture="mdxnet_onnx", stems=(target, complement),
                    files=(ZooFile(_UVR_RELEASE + file, sha256, size, sha256_source),),
                    licence="not stated for the weights (UVR code is MIT; UVR asks users of its models to credit UVR)",
                    sdr=sdr, sdr_source=sdr_source,
                    manifest=(file.rsplit(".", 1)[0] + ".json", json.dumps(settings, indent=1) + "\n"),
                    notes=(notes + "; " if notes else "") + "settings: UVR model_data.json @7bfceaa7",
                    load_file=file)


_HF_MIRROR = "a Hugging Face mirror's LFS pointer ({}); the publisher gives none"
_AUDIO_SEPARATOR_SCORES = "python-audio-separator models-scores.json @05bd8eca (MUSDB18 median)"

CATALOGUE: tuple[ZooEntry, ...] = (
    _demucs("htdemucs", ["955717e8-8726e21a.th"], "models: ['955717e8']\n", None,
            notes="demucs default model; trained on MUSDB HQ + 800 songs"),
    _demucs("htdemucs_ft", ["f7e0c4bc-ba3fe64a.th", "d12395a8-e57c48e6.th", "92cfc3b6-ef3bcb9c.th", "04573f0d-f3cf25b2.th"],
            "models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']\n"
            "weights: [[1., 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.], [0., 0., 0., 1.]]\n",
            "9.0 (mean of 4 stems, MUSDB HQ test, 'HT Demucs f.t. (v4)')",
            notes="bag of 4 per-source fine-tuned models (4x slower)"),
    _demucs("htdemucs_6s", ["5c90dfd2-34c22ccb.th"], "models: ['5c90dfd2']\n", None,
            stems=SIX_STEMS, notes="README: piano 'not working great'"),
    _demucs("hdemucs_mmi", ["75fc33f5-1941ce65.th"], "models: ['75fc33f5']\nsegment: 44\n", None,
            notes="Hybrid Demucs v3 retrained on MUSDB + 800 songs", architecture="hdemucs"),
    _umx("umxhq", "3370489", {"vocals": "vocals-b62c91ce.pth", "drums": "drums-9619578f.pth",
                              "bass": "bass-8d85a5bd.pth", "other": "other-b52fbbf7.pth"},
         "vocals 6.25, bass 5.07, drums 6.04, other 4.28", None),
    _umx("umx", "3370486", {"vocals": "vocals-c8df74a5.pth", "drums": "drums-5a48008b.pth",
                            "bass": "bass-646024d3.pth", "other": "other-f8e132cc.pth"},
         "vocals 6.32, bass 5.23, drums 5.73, other 4.02", None),
    _umx("umxl", "5069601", {"vocals": "vocals-bccbd9aa.pth", "drums": "drums-69e0ebd4.pth",
                             "bass": "bass-2ca1ce51.pth", "other": "other-c8c5b3e6.pth"},
         "vocals 7.21, bass 6.02, drums 7.15, other 4.89", "CC BY-NC-SA 4.0 (weights; non-commercial, per openunmix README)"),
    _roformer("bs_roformer_viperx_1297", ("vocals", "other"),
              ZooFile(_UVR_RELEASE + "model_bs_roformer_ep_317_sdr_12.9755.ckpt",
                      "5b84f37e8d444c8cb30c79d77f613a41c05868ff9c9ac6c7049c00aefae115aa", 639331213,
                      _HF_MIRROR.format("KitsuneX07/Music_Source_Sepetration_Models")),
              "d9672dac1160ebe9c39aec3d3f3320190e49a5c0/configs/viperx/model_bs_roformer_ep_317_sdr_12.9755.yaml",
              "vocals 10.87", "Multisong dataset", notes="BS Roformer (viperx edition); vocals + instrumental"),
    _roformer("mel_roformer_viperx_1143", ("vocals", "other"),
              ZooFile(_UVR_RELEASE + "model_mel_band_roformer_ep_3005_sdr_11.4360.ckpt",
                      "21b9d0958e35b8ebfbe2afe69bbd5444e5ffe2f5d80ae0d583b833d2f3c0d139", 1007816988,
                      _HF_MIRROR.format("KitsuneX07/Music_Source_Sepetration_Models")),
              "d9672dac1160ebe9c39aec3d3f3320190e49a5c0/configs/viperx/model_mel_band_roformer_ep_3005_sdr_11.4360.yaml",
              "vocals 9.67", "Multisong dataset", notes="MelBand Roformer (viperx edition); vocals + instrumental"),
    _roformer("mel_roformer_kim", ("vocals", "other"),
              ZooFile("https://huggingface.co/KimberleyJSN/melbandroformer/resolve/main/MelBandRoformer.ckpt",
                      "87201f4d31afb5bc79993230fc49446918425574db48c01c405e44f365c7559e", 913106900,
                      "the publisher's Hugging Face LFS details (KimberleyJSN/melbandroformer)"),
              "4a9f4d74ba06fb271fdc92c5c6528dfb79fc90bd/configs/KimberleyJensen/config_vocals_mel_band_roformer_kj.yaml",
              "vocals 10.98", "Multisong dataset", licence="unknown (Hugging Face page: 'License: unknown')",
              notes="MelBand Roformer (KimberleyJensen edition); vocals + instrumental"),
    _roformer("bs_roformer_viperx_other", ("other", "vocals"),
              ZooFile(_UVR_RELEASE + "model_bs_roformer_ep_937_sdr_10.5309.ckpt",
                      "a2e825a03bc908cb04dbd88eddeefbf5147dd1cf1f95cebf453d9dbfabec494b", None,
                      _HF_MIRROR.format("Eddycrack864/Music-Source-Separation-Training")),
              "ce659b894285eedfb28e236aeffca18c90b96ffb/configs/viperx/model_bs_roformer_ep_937_sdr_10.5309.yaml",
              "other 6.85", "'Single stem models' table, dataset not stated", notes="BS Roformer (viperx edition) predicting 'other' (instrumental)"),
    _mdxnet("mdx_voc_ft", "UVR-MDX-NET-Voc_FT.onnx",
            "534b2070fcc7df514b13ef660dc8cbb328679c2374d04354a5c42bb14ecce111",
            _HF_MIRROR.format("AnhP/Vietnamese-RVC-Project"), None, "vocals", "instrumental", 7680, 3072, 8, 1.021,
            "vocals 9.66183, instrumental 15.2718", _AUDIO_SEPARATOR_SCORES),
    _mdxnet("mdx_kim_vocal_2", "Kim_Vocal_2.onnx",
            "ce74ef3b6a6024ce44211a07be9cf8bc6d87728cc852a68ab34eb8e58cde9c8b",
            _HF_MIRROR.format("debugzxcv/uvr"), 66759214, "vocals", "instrumental", 7680, 3072, 8, 1.009),
    _mdxnet("mdx_kim_inst", "Kim_Inst.onnx",
            "86b1940e7122fbdd2beadc65507cbff6c352d79012a8a7e60d56db98532af5f7",
            _HF_MIRROR.format("debugzxcv/uvr"), 66759214, "instrumental", "vocals", 7680, 3072, 8, 1.02),
    _mdxnet("mdx_inst_hq_3", "UVR-MDX-NET-Inst_HQ_3.onnx",
            "317554b07fe1ea5279a77f2b1520a41ea4b93432560c4ffd08792c30fddf9adc",
            _HF_MIRROR.format("lissette/uvr"), 66759214, "instrumental", "vocals", 6144, 3072, 8, 1.022),
    _mdxnet("mdx_inst_hq_4", "UVR-MDX-NET-Inst_HQ_4.onnx",
            "3c4b5b9b05090fdf238f38ba5046813982d50e2a652e9cb3324ea79720c3c9c8",
            _HF_MIRROR.format("AnhP/Vietnamese-RVC-Project"), None, "instrumental", "vocals", 5120, 2560, 8, 1.019),
    _mdxnet("mdx_kara_2", "UVR_MDXNET_KARA_2.onnx",
            "bf32e15105a09c0f7dddd2b67346146334d6f3ecb399ed7638eba2ab07cbf5f4",
            _HF_MIRROR.format("lissette/uvr"), 52786726, "instrumental", "vocals", 5120, 2048, 8, 1.065,
            notes="karaoke: lead vocals out, backing vocals stay in the instrumental"),
)


#: Models shipped inside the package (``stemforge/assets``), loaded by name without a download: name -> file.
#: ``default``: the offline U-Net (MODEL_CARD.md); ``lowlatency``: its causal variant for real-time streaming
#: (46.4 ms algorithmic latency, ``stemforge stream`` / ``stemforge live``; MODEL_CARD.md, recipes/lowlatency.sh).
BUNDLED: dict[str, str] = {"default": "default.safetensors", "lowlatency": "lowlatency.safetensors"}


def list_checkpoints() -> list[ZooEntry]:
    """Every known public checkpoint, in catalogue order."""
    return list(CATALOGUE)


def find(name: str) -> ZooEntry | None:
    """The catalogue entry called ``name``, or None."""
    return next((e for e in CATALOGUE if e.name == name), None)
