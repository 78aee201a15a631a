"""validate_spec: cheap checks of the --dataset options, one line naming the option and the value."""

import os

import pytest

from tokenswarm.datasets import DATASETS, DatasetError, DatasetSpec, open_dataset, validate_spec
from tokenswarm.errors import SettingsError

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAREGPT = os.path.join(TESTS, "fixtures", "datasets", "sharegpt.json")


def problem(**kw) -> str:
    with pytest.raises(DatasetError) as e:
        validate_spec(DatasetSpec(**kw))
    assert isinstance(e.value, SettingsError) and "\n" not in str(e.value)
    return str(e.value)


def test_good_specs_pass():
    validate_spec(DatasetSpec())
    validate_spec(DatasetSpec(input_len=1, output_len=5, range_ratio=0.99))
    for name in DATASETS[1:]:
        validate_spec(DatasetSpec(name=name, path=SHAREGPT, output_len=-1, min_prompt_tokens=5, max_prompt_tokens=5))
    validate_spec(DatasetSpec(name="jsonl", path=SHAREGPT, prompt_field="text", min_prompt_tokens=9))


def test_bad_values_name_the_option(tmp_path):
    assert problem(name="alpaca") == ("bad --dataset 'alpaca': pick one of random, sharegpt, openqa, longalpaca, "
                                      "jsonl, csv")
    assert problem(input_len=0) == "bad --input-len 0: must be at least 1"
    assert problem(output_len=-2).startswith("bad --output-len -2: must be 0")
    assert problem(output_len=-1).startswith("bad --output-len -1: reference answer lengths need a file dataset")
    assert problem(range_ratio=1.0) == "bad --range-ratio 1: must be at least 0 and below 1"
    assert problem(range_ratio=-0.1) == "bad --range-ratio -0.1: must be at least 0 and below 1"
    assert problem(min_prompt_tokens=-1) == "bad --min-prompt-tokens -1: must be 0 or more"
    assert problem(max_prompt_tokens=-1) == "bad --max-prompt-tokens -1: must be 0 (no limit) or more"
    assert problem(min_prompt_tokens=10, max_prompt_tokens=5) == (
        "bad --min-prompt-tokens 10: more than --max-prompt-tokens 5")
    assert problem(path="x.json").startswith("bad --dataset-path 'x.json': --dataset random reads no file")
    assert problem(prompt_field="q") == ("bad --prompt-field 'q': only --dataset jsonl or csv takes it "
                                         "(--dataset random has its own layout)")
    assert problem(name="sharegpt") == "bad --dataset-path '': --dataset sharegpt needs a file"
    missing = tmp_path / "x.csv"
    assert problem(name="csv", path=str(missing)) == f"bad --dataset-path '{missing}': no such file"
    assert problem(name="csv", path=str(tmp_path)) == f"bad --dataset-path '{tmp_path}': a folder, not a file"


def test_open_checks_the_spec_and_the_shard():
    with pytest.raises(DatasetError, match="bad --dataset 'nope'"):
        open_dataset(DatasetSpec(name="nope"))
    with pytest.raises(ValueError, match="shard 3 of 3"):
        open_dataset(DatasetSpec(), 3, 3)
