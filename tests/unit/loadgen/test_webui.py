"""The web UI's pieces that need no server: the start form's fields, the form's values, the charts' series."""

import pytest

from tokenswarm.loadgen.livewatch import Series
from tokenswarm.loadgen.webui import form_fields, form_value
from tokenswarm.options import OPTIONS
from tokenswarm.settings import SettingsError


def locust_fields(**values):
    """extra_options as Locust 2.47's ui_extra_args_dict gives them: every option shown, alphabetically."""
    out = {}
    for opt in sorted(OPTIONS, key=lambda o: o.dest):
        if opt.web_ui:
            out[opt.dest] = {"default_value": values.get(opt.dest, opt.default), "is_secret": False,
                             "is_required": False, "help_text": opt.help, "is_multiple": False, "choices": None}
    return out


def test_the_form_shows_the_options_that_matter_in_order_with_units():
    fields = form_fields(locust_fields(), sweep=False)
    assert list(fields) == ["engine", "model", "max_tokens", "dataset", "dataset_path", "input_len", "duration",
                            "requests", "slo"]
    assert "vllm" in fields["engine"]["choices"] and fields["engine"]["default_value"] == "sim"
    assert fields["dataset"]["choices"][:2] == ["random", "sharegpt"]
    assert fields["model"]["choices"] is None
    for name in ("max_tokens", "input_len"):
        assert "in tokens" in fields[name]["help_text"]
    assert "in ms" in fields["slo"]["help_text"] and "30s" in fields["duration"]["help_text"]
    # no option with an unexplained placeholder (Temperature -1, Warmup -1) is on the form
    assert all(f["default_value"] != -1 for f in fields.values())
    assert len(fields) < 15  # of about 50 options


def test_a_sweep_form_asks_for_levels_not_a_duration_and_keeps_other_plugins_fields():
    other = {"my_plugin_flag": {"default_value": "x", "help_text": "a plugin's own", "choices": None}}
    fields = form_fields({**locust_fields(levels="1,2,4"), **other}, sweep=True)
    assert list(fields) == ["engine", "model", "max_tokens", "dataset", "dataset_path", "input_len", "levels",
                            "rates", "level_duration", "level_requests", "precision", "min_lifetimes", "capacity",
                            "slo", "my_plugin_flag"]
    assert "req/s" in fields["rates"]["help_text"] and fields["levels"]["default_value"] == "1,2,4"
    assert fields["my_plugin_flag"] == other["my_plugin_flag"]


def test_an_engine_given_elsewhere_stays_selectable():
    fields = form_fields(locust_fields(engine="my-gateway"), sweep=False)
    assert fields["engine"]["choices"][0] == "my-gateway" and "vllm" in fields["engine"]["choices"]


def test_form_values_are_typed_as_locust_stores_them():
    assert form_value(128, "256") == 256 and isinstance(form_value(1.0, "2"), float)
    assert form_value("", "vllm") == "vllm" and form_value(False, "true") is True
    with pytest.raises(ValueError):
        form_value(128, "12.5")


def test_a_wrong_form_value_is_one_line_naming_the_option():
    from types import SimpleNamespace

    from tokenswarm.loadgen.webui import form_options
    from tokenswarm.options import namespace_defaults

    env = SimpleNamespace(parsed_options=namespace_defaults())
    with pytest.raises(SettingsError, match=r"^bad --max-tokens 'lots': must be a whole number$"):
        form_options(env, {"max_tokens": "lots", "user_count": "4"})
    opts, host = form_options(env, {"max_tokens": "64", "host": "http://h:1<script>", "user_count": "4"})
    assert opts.max_tokens == 64 and host == "http://h:1script"  # as Locust stores the host


def sample(t, **kw):
    return {"t": float(t), "users": 1, **kw}


def test_the_series_keeps_a_bounded_whole_test_more_coarsely_as_it_runs():
    s = Series(interval_s=2.0, cap=8)
    assert s.due(0.0)
    s.add(sample(0), 0.0)
    assert not s.due(1.9) and s.due(2.0)
    for now in range(1, 200):  # the controller looks every second and samples when one is due
        if s.due(now):
            s.add(sample(now), now)
    times = [x["t"] for x in s.samples]
    assert 4 <= len(times) < 8 and times == sorted(times)
    assert times[0] == 0 and times[-1] >= 199 - s.interval_s  # the whole test, from its start to now
    assert s.interval_s >= 32.0  # coarser as it ran on
    assert s.since(-1) == s.samples and s.since(0) == s.samples[1:]
    assert s.since(times[-2]) == s.samples[-1:] and s.since(times[-1]) == []
