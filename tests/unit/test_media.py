"""Images and audio in requests: synthetic media, their parts in each API's message, their input tokens as the
simulated engine counts them."""

import base64
import io
import wave

import pytest
from PIL import Image

from tokenswarm.datasets import Prompt
from tokenswarm.dialects import RequestOptions, get_dialect
from tokenswarm.errors import SettingsError
from tokenswarm.media import MediaPart, MediaSpec, SyntheticMedia, check, parse_size
from tokenswarm.simengine.apis import media_tokens


@pytest.mark.parametrize("fmt,mime", [("png", "image/png"), ("jpeg", "image/jpeg")])
def test_images_are_fresh_and_of_the_asked_size_and_format(fmt, mime):
    media = SyntheticMedia(MediaSpec(images=2, image_width=40, image_height=24, image_format=fmt), seed=3)
    a, b = media.parts(), media.parts()
    assert [p.kind for p in a] == ["image", "image"] and a[0].mime == mime
    assert len({p.data for p in a + b}) == 4  # every image is new: no engine cache serves it
    with Image.open(io.BytesIO(base64.b64decode(a[0].data))) as im:
        assert im.size == (40, 24) and im.format == fmt.upper()
    assert a[0].url.startswith(f"data:{mime};base64,")
    assert SyntheticMedia(MediaSpec(images=1), seed=3).parts() == SyntheticMedia(MediaSpec(images=1), seed=3).parts()


def test_audio_is_a_wav_clip_of_the_asked_length():
    (clip,) = SyntheticMedia(MediaSpec(audio_s=1.5, audio_rate=8000)).parts()
    assert clip.kind == "audio" and clip.format == "wav"
    with wave.open(io.BytesIO(base64.b64decode(clip.data))) as w:
        assert w.getframerate() == 8000 and w.getnframes() == 12000 and w.getsampwidth() == 2


def test_bad_media_options_are_one_line_naming_the_option():
    assert parse_size("640x480") == (640, 480)
    for text in ("640", "axb", "0x10", "99999x1"):
        with pytest.raises(SettingsError, match="bad --image-size"):
            parse_size(text)
    with pytest.raises(SettingsError, match="bad --image-format 'gif'"):
        check(MediaSpec(images=1, image_format="gif"))
    with pytest.raises(SettingsError, match="bad --audio-rate 10"):
        check(MediaSpec(audio_s=1, audio_rate=10))


IMG = MediaPart("image", "image/png", "AAAA")
WAV = MediaPart("audio", "audio/wav", "BBBB")


def test_each_api_carries_media_in_its_own_parts():
    p = Prompt("p", "Describe.", media=[IMG, WAV])
    opts = RequestOptions(model="m")
    chat = get_dialect("openai-chat").body(p, opts)["messages"][-1]["content"]
    assert chat == [{"type": "text", "text": "Describe."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "BBBB", "format": "wav"}}]
    p = Prompt("p", "Describe.", media=[IMG],
               messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "Describe."}])
    resp = get_dialect("openai-responses").body(p, opts)["input"]
    assert resp[0] == {"role": "system", "content": "s"}
    assert resp[1]["content"] == [{"type": "input_text", "text": "Describe."},
                                  {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]
    msgs = get_dialect("anthropic-messages").body(p, opts)["messages"]
    assert msgs[-1]["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "AAAA"}}
    assert p.messages[1]["content"] == "Describe."  # the prompt's own messages are left as they were


def test_the_simulated_engine_counts_media_tokens_in_a_stated_way():
    img = SyntheticMedia(MediaSpec(images=1, image_width=56, image_height=84)).parts()[0]
    assert media_tokens("image", img.url) == 2 * 3  # 28-pixel patches
    clip = SyntheticMedia(MediaSpec(audio_s=2.0)).parts()[0]
    assert media_tokens("audio", clip.data) == 50  # 25 per second
    assert media_tokens("image", "https://example.com/cat.png") == 400  # not readable: a fixed amount


def test_media_only_where_the_api_takes_it():
    import argparse

    from tokenswarm.options import OPTIONS
    from tokenswarm.settings import from_options

    def opts(**kw):
        ns = argparse.Namespace(**{o.dest: o.default for o in OPTIONS})
        for k, v in kw.items():
            setattr(ns, k, v)
        return ns

    s = from_options(opts(images=2, image_size="64x32", image_format="jpeg"), environ={})
    assert s.public()["media"] == {"images": 2, "image_size": "64x32", "image_format": "jpeg"}
    with pytest.raises(SettingsError, match="bad --images 1: the openai-completions dialect sends no image parts"):
        from_options(opts(images=1, dialect="openai-completions"), environ={})
    with pytest.raises(SettingsError, match="bad --audio-seconds 2: the anthropic-messages dialect sends no audio"):
        from_options(opts(audio_seconds=2.0, dialect="anthropic-messages"), environ={})


def test_dataset_records_name_image_and_audio_files(tmp_path):
    import json

    from tokenswarm.datasets import DatasetError, DatasetSpec, open_dataset
    from tokenswarm.media import from_file, resolve

    (tmp_path / "img").mkdir()
    png = SyntheticMedia(MediaSpec(images=1, image_width=8, image_height=8)).parts()[0]
    (tmp_path / "img" / "a.png").write_bytes(base64.b64decode(png.data))
    (tmp_path / "clip.wav").write_bytes(base64.b64decode(SyntheticMedia(MediaSpec(audio_s=0.5)).parts()[0].data))
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "What is this?", "images": ["img/a.png"], "audio": "clip.wav"}) + "\n"
                    + json.dumps({"prompt": "plain text"}) + "\n")
    prompts = open_dataset(DatasetSpec(name="jsonl", path=str(data)), 0, 1, None, 16)
    got = {p.text: p.media for p in (next(prompts), next(prompts))}
    assert got["plain text"] is None
    assert got["What is this?"] == [str(tmp_path / "img" / "a.png"), str(tmp_path / "clip.wav")]
    parts = resolve(got["What is this?"])
    assert [p.kind for p in parts] == ["image", "audio"] and parts[0] == png
    with pytest.raises(SettingsError, match="not an image or audio file"):
        from_file(str(data))
    data.write_text(json.dumps({"prompt": "x", "image": "missing.png"}) + "\n")
    with pytest.raises(DatasetError, match="d.jsonl:1: no such image or audio file 'missing.png'"):
        open_dataset(DatasetSpec(name="jsonl", path=str(data)), 0, 1, None, 16)


def test_images_by_url_are_sent_as_urls_for_the_server_to_fetch():
    url = "https://example.com/cat.png"
    (part,) = SyntheticMedia(MediaSpec(image_urls=[url])).parts()
    assert part.remote and part.url == url
    p = Prompt("p", "What is it?", media=[part])
    opts = RequestOptions(model="m")
    assert get_dialect("openai-chat").body(p, opts)["messages"][0]["content"][1] == {
        "type": "image_url", "image_url": {"url": url}}
    assert get_dialect("openai-responses").body(p, opts)["input"][0]["content"][1] == {
        "type": "input_image", "image_url": url}
    assert get_dialect("anthropic-messages").body(p, opts)["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "url", "url": url}}
    with pytest.raises(SettingsError, match="bad --image-url 'file:///etc/passwd'"):
        check(MediaSpec(image_urls=["file:///etc/passwd"]))


def test_a_media_axis_gives_one_spec_per_value():
    from tokenswarm.media import parse_axis

    axis = parse_axis("images=0,2", MediaSpec(image_width=64, image_height=64))
    assert [(label, s.images, s.image_width) for label, s in axis] == [("images-0", 0, 64), ("images-2", 2, 64)]
    axis = parse_axis("image-size=32x32,128x64", MediaSpec())
    assert [(s.images, s.image_width, s.image_height) for _, s in axis] == [(1, 32, 32), (1, 128, 64)]
    assert [s.audio_s for _, s in parse_axis("audio-seconds=1.5,3", MediaSpec())] == [1.5, 3.0]
    for bad in ("pixels=1,2", "images=", "images=two", "image-size=big"):
        with pytest.raises(SettingsError, match="bad --"):
            parse_axis(bad, MediaSpec())
