"""--tokenizer: loading from a file, a model folder or the local Hugging Face cache; counts without extras."""

import os

import pytest

from tokenizer_helpers import BUILDERS, save
from tokenswarm.errors import SettingsError
from tokenswarm.tokencount import TokenCounter, load_tokenizer


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {kind: save(kind, str(root / kind)) for kind in BUILDERS}


def test_loads_a_file_and_a_folder(files):
    path = files["bytelevel"]
    by_file = load_tokenizer(path)
    by_folder = load_tokenizer(os.path.dirname(path))
    assert isinstance(by_file, TokenCounter) and by_file.path == path and by_folder.path == path
    assert by_file.vocab_size == by_folder.vocab_size == 2000
    text = "Hello café, 你好 😀 straße"
    assert by_file.encode(text) == by_folder.encode(text)
    assert by_file.count(text) == len(by_file.encode(text)) > 5


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_count_adds_no_special_tokens_and_no_padding(files, kind):
    # the byte-level file has a post-processor adding 2 specials; the WordPiece one adds [CLS]/[SEP] and
    # saved padding and truncation to 64: none of it may reach a count
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(files[kind])
    tc = load_tokenizer(files[kind])
    text = " ".join(["ban del har kex"] * 40)
    plain = len(raw.encode(text, add_special_tokens=False).ids)
    if kind == "wordpiece":
        assert len(raw.encode("ban").ids) == 64  # the file itself pads: the counter must not
        raw.no_truncation()
        raw.no_padding()
        plain = len(raw.encode(text, add_special_tokens=False).ids)
    assert plain > 64
    assert tc.count(text) == plain == len(tc.encode(text))
    assert tc.count("ban") == len(tc.encode("ban")) <= 2
    texts = [text[: 7 * i] for i in range(100)]
    assert tc.count_batch(texts) == [tc.count(t) for t in texts]
    assert tc.count_batch(texts[:3]) == [tc.count(t) for t in texts[:3]]


def test_decode_round_trip(files):
    tc = load_tokenizer(files["bytelevel"])
    text = "The quick brown fox, naïve café 日本語 😀"
    assert tc.decode(tc.encode(text)) == text


def test_hugging_face_cache_entry_and_model_id(files, tmp_path):
    cache = tmp_path / "hub"
    entry = cache / "models--acme--tiny-llm"
    old = save("metaspace", str(entry / "snapshots" / "aaaa"))
    new = save("bytelevel", str(entry / "snapshots" / "bbbb"))
    os.utime(old, (1, 1))  # the newest revision wins
    assert load_tokenizer(str(entry)).path == new
    assert load_tokenizer("acme/tiny-llm", environ={"HF_HUB_CACHE": str(cache)}).path == new
    assert load_tokenizer("acme/tiny-llm", environ={"HF_HOME": str(tmp_path)}).path == new
    with pytest.raises(SettingsError, match=r"^bad --tokenizer 'acme/other': no such file or folder, and no "
                                            r"tokenizer.json for that model in the local Hugging Face cache .*"
                                            r"never downloads"):
        load_tokenizer("acme/other", environ={"HF_HUB_CACHE": str(cache)})


def test_errors_name_the_path_and_the_problem(tmp_path):
    def err(path: str) -> str:
        with pytest.raises(SettingsError) as e:
            load_tokenizer(path, environ={"HF_HUB_CACHE": str(tmp_path / "nohub")})
        assert "\n" not in str(e.value)
        return str(e.value)

    assert err(str(tmp_path / "nope.json")) == f"bad --tokenizer '{tmp_path / 'nope.json'}': no such file or folder"
    assert err(str(tmp_path)) == f"bad --tokenizer '{tmp_path}': no tokenizer.json in that folder"
    (tmp_path / "tokenizer.model").write_bytes(b"\x00sentencepiece")
    assert err(str(tmp_path)).endswith("no tokenizer.json in that folder (it has tokenizer.model: save the "
                                       "tokenizer as tokenizer.json)")
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"hello": "world"}')
    assert err(str(garbage)).startswith(f"bad --tokenizer '{garbage}': not a tokenizer.json: ")
    (tmp_path / "text.json").write_text("not json at all")
    assert err(str(tmp_path / "text.json")).startswith(f"bad --tokenizer '{tmp_path / 'text.json'}': not a "
                                                        "tokenizer.json: ")
    bad_folder = tmp_path / "model"
    bad_folder.mkdir()
    (bad_folder / "tokenizer.json").write_text("[]")
    assert err(str(bad_folder)).startswith(f"bad --tokenizer '{bad_folder}': not a tokenizer.json "
                                           f"({bad_folder / 'tokenizer.json'}): ")
    assert err("") == "bad --tokenizer '': empty path"
