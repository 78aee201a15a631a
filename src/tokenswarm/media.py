"""Images and audio sent with prompts: synthetic ones, made per request, as base64 data for data URLs.

``--images N`` puts N images of ``--image-size WxH`` (``--image-format`` png or jpeg) in every request;
``--audio-seconds S`` one clip of S seconds at ``--audio-rate`` Hz (16-bit mono WAV). Each image is fresh
uniform noise (Pillow encodes it; noise is the hardest case for the codec, so its bytes are an upper bound of a
photo's at that size), each clip fresh noise, so no engine serves a request's media from a cache of earlier
ones (vLLM and SGLang key their multimodal caches by content). A :class:`MediaPart` is what a dialect puts in a
message (:mod:`tokenswarm.dialects`): OpenAI's ``image_url`` / ``input_audio`` parts, Responses'
``input_image``, Anthropic's ``image`` block. Files a dataset record names are read by :func:`from_file`.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import random
import wave
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from tokenswarm.errors import SettingsError

IMAGE_FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}
MAX_IMAGE_SIDE = 8192
MAX_AUDIO_SECONDS = 600.0


class MediaPart(NamedTuple):
    """One image or audio clip of a request: ``kind`` (``image`` or ``audio``), its MIME type and its bytes in
    base64 (``data:<mime>;base64,<data>`` as a URL)."""

    kind: str
    mime: str
    data: str

    @property
    def remote(self) -> bool:
        """The part names an http(s) URL the server fetches (``--image-url``), not data it carries."""
        return self.data.startswith(("http://", "https://"))

    @property
    def url(self) -> str:
        return self.data if self.remote else f"data:{self.mime};base64,{self.data}"

    @property
    def format(self) -> str:
        """The short format name: ``png``, ``jpeg``, ``wav``."""
        return self.mime.split("/", 1)[1].replace("x-", "")


@dataclass
class MediaSpec:
    """What media every request carries (``--images``, ``--image-size``, ``--image-format``,
    ``--audio-seconds``, ``--audio-rate``); nothing by default."""

    images: int = 0
    image_width: int = 512
    image_height: int = 512
    image_format: str = "png"
    audio_s: float = 0.0
    audio_rate: int = 16000
    image_urls: list[str] = field(default_factory=list)  # --image-url: sent as URLs, fetched by the server

    @property
    def enabled(self) -> bool:
        return bool(self.images or self.audio_s or self.image_urls)

    def describe(self) -> dict[str, object]:
        """For run.json: what each request carried."""
        out: dict[str, object] = {}
        if self.images:
            out.update(images=self.images, image_size=f"{self.image_width}x{self.image_height}",
                       image_format=self.image_format)
        if self.audio_s:
            out.update(audio_s=self.audio_s, audio_rate=self.audio_rate)
        if self.image_urls:
            out.update(image_urls=len(self.image_urls))
        return out


def parse_size(text: str) -> tuple[int, int]:
    """``"512x384"`` -> (512, 384); SettingsError naming ``--image-size`` otherwise."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise SettingsError(f"bad --image-size {text!r}: use WIDTHxHEIGHT, e.g. 512x512") from None
    if not (1 <= w <= MAX_IMAGE_SIDE and 1 <= h <= MAX_IMAGE_SIDE):
        raise SettingsError(f"bad --image-size {text!r}: each side must be 1 to {MAX_IMAGE_SIDE} pixels")
    return w, h


def check(spec: MediaSpec) -> None:
    """SettingsError, naming the option and value, for media that cannot be made."""
    if spec.images < 0:
        raise SettingsError(f"bad --images {spec.images}: must be 0 or more")
    if spec.image_format not in IMAGE_FORMATS:
        raise SettingsError(f"bad --image-format {spec.image_format!r}: choose one of {', '.join(IMAGE_FORMATS)}")
    if not 0 <= spec.audio_s <= MAX_AUDIO_SECONDS:
        raise SettingsError(f"bad --audio-seconds {spec.audio_s:g}: must be 0 to {MAX_AUDIO_SECONDS:g}")
    if not 1000 <= spec.audio_rate <= 192000:
        raise SettingsError(f"bad --audio-rate {spec.audio_rate}: must be 1000 to 192000 Hz")
    for url in spec.image_urls:
        if not url.startswith(("http://", "https://")) or len(url) < 12:
            raise SettingsError(f"bad --image-url {url[:80]!r}: an http(s) URL the server can fetch")


#: the media settings a ``--media-axis`` steps through: name -> how one value is read into MediaSpec fields
AXES = ("images", "image-size", "audio-seconds")


def parse_axis(text: str, spec: MediaSpec) -> list[tuple[str, MediaSpec]]:
    """``images=0,1,2,4``, ``image-size=256x256,1024x1024`` or ``audio-seconds=5,30`` -> one (label, spec) per
    value, each ``spec`` with that setting (``images-2``, ``image-size-256x256``); SettingsError naming
    ``--media-axis`` and what is wrong. Each spec is :func:`check`-ed."""
    name, _, values = str(text).partition("=")
    name = name.strip()
    items = [v.strip() for v in values.split(",") if v.strip()]
    if name not in AXES or not items:
        raise SettingsError(f"bad --media-axis {text!r}: use NAME=V1,V2,... with NAME one of {', '.join(AXES)}")
    out = []
    for item in items:
        try:
            if name == "images":
                one = replace(spec, images=int(item))
            elif name == "image-size":
                w, h = parse_size(item)
                one = replace(spec, image_width=w, image_height=h, images=spec.images or 1)
            else:
                one = replace(spec, audio_s=float(item))
        except ValueError:
            raise SettingsError(f"bad --media-axis {text!r}: {item!r} is not a value of {name}") from None
        check(one)
        out.append((f"{name}-{item}", one))
    return out


def image(width: int, height: int, fmt: str, rng: np.random.Generator) -> bytes:
    """A ``width`` x ``height`` RGB image of uniform noise, encoded as ``fmt`` (png or jpeg)."""
    from PIL import Image

    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=85)
    else:
        Image.fromarray(pixels, "RGB").save(out, "PNG", compress_level=1)
    return out.getvalue()


def audio(seconds: float, rate: int, rng: np.random.Generator) -> bytes:
    """``seconds`` of 16-bit mono noise at ``rate`` Hz, as a WAV file."""
    samples = rng.integers(-8000, 8000, size=max(1, int(seconds * rate)), dtype=np.int16)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


#: a media file's MIME type by its extension (dataset records naming files)
FILE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
              ".gif": "image/gif", ".wav": "audio/wav", ".mp3": "audio/mp3", ".flac": "audio/flac",
              ".ogg": "audio/ogg"}


@functools.lru_cache(maxsize=256)
def from_file(path: str) -> MediaPart:
    """The image or audio file ``path`` (its kind and MIME type from the extension) as a :class:`MediaPart`;
    SettingsError naming the file for an extension not in :data:`FILE_TYPES` or a file that cannot be read.
    The last 256 are kept encoded."""
    mime = FILE_TYPES.get(os.path.splitext(path)[1].lower())
    if mime is None:
        raise SettingsError(f"{path}: not an image or audio file tokenswarm sends (extensions: "
                            f"{', '.join(FILE_TYPES)})")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise SettingsError(f"{path}: cannot read it ({e.strerror or e})") from None
    return MediaPart(mime.split("/", 1)[0], mime, base64.b64encode(raw).decode("ascii"))


def resolve(parts: list[object]) -> list[MediaPart]:
    """A prompt's media, files (paths a dataset record named) read into parts."""
    return [from_file(p) if isinstance(p, str) else p for p in parts]  # type: ignore[misc]


class SyntheticMedia:
    """Fresh media for each request, as :class:`MediaPart` lists (:meth:`parts`), seeded (``seed``)."""

    def __init__(self, spec: MediaSpec, seed: int = 0) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(random.Random(seed).getrandbits(64))

    def parts(self) -> list[MediaPart]:
        s = self.spec
        out = []
        mime = IMAGE_FORMATS[s.image_format]
        for _ in range(s.images):
            raw = image(s.image_width, s.image_height, s.image_format, self.rng)
            out.append(MediaPart("image", mime, base64.b64encode(raw).decode("ascii")))
        if s.audio_s:
            raw = audio(s.audio_s, s.audio_rate, self.rng)
            out.append(MediaPart("audio", "audio/wav", base64.b64encode(raw).decode("ascii")))
        out += [MediaPart("image", "", url) for url in s.image_urls]
        return out
