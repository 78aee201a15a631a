"""Option values -> validated settings: one-line errors, headers, keys, redaction."""

import argparse
import os

import pytest

from tokenswarm.options import OPTIONS, add_options, env_default, to_argv, to_env
from tokenswarm.settings import REDACTED, SettingsError, from_options, parse_duration, parse_header, with_trace


def opts(**kw):
    ns = argparse.Namespace(**{o.dest: o.default for o in OPTIONS})
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_defaults_give_the_sim_preset():
    s = from_options(opts(), environ={})
    assert s.preset.name == "sim" and s.dialect.name == "openai-chat"
    assert s.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert s.request.model == "tokenswarm-sim" and s.request.max_tokens == 128


def test_preset_overrides():
    s = from_options(opts(engine="sglang", model="Qwen", endpoint="/v1/completions", dialect="openai-completions"),
              host="http://gpu-box:30000", environ={})
    assert s.url == "http://gpu-box:30000/v1/completions" and s.dialect.name == "openai-completions"
    assert s.request.model == "Qwen"
    assert from_options(opts(engine="vllm"), environ={}).model_from_server  # no model: ask the server


@pytest.mark.parametrize("kw,host,msg", [
    ({"engine": "nope"}, None, "unknown engine 'nope'; choose one of: sim, vllm"),
    ({"dialect": "nope"}, None, "unknown dialect 'nope'; choose one of: openai-chat, openai-completions"),
    ({}, "localhost:8000", "bad --host 'localhost:8000'"),
    ({"max_tokens": 0}, None, "bad --max-tokens 0"),
    ({"input_len": -3}, None, "bad --input-len -3"),
    ({"requests": -1}, None, "bad --requests -1"),
    ({"read_timeout": 0.0}, None, "bad --read-timeout 0.0"),
    ({"max_fail_ratio": 2.0}, None, "bad --max-fail-ratio 2.0"),
    ({"extra_body": "{nope"}, None, "bad --extra-body: not JSON"),
    ({"extra_body": "[1]"}, None, "bad --extra-body: must be a JSON object"),
    ({"endpoint": "v1/chat"}, None, "bad --endpoint 'v1/chat'"),
    ({"header": ["NoColon"]}, None, "bad --header starting 'NoColon'"),
])
def test_bad_input_is_one_line_naming_option_and_value(kw, host, msg):
    with pytest.raises(SettingsError) as e:
        from_options(opts(**kw), host=host, environ={})
    assert msg in str(e.value)
    assert "\n" not in str(e.value)


def test_api_key_from_flag_then_environment_and_redacted():
    s = from_options(opts(), environ={"OPENAI_API_KEY": "sk-env-openai"})
    assert s.headers["Authorization"] == "Bearer sk-env-openai"
    s = from_options(opts(), environ={"OPENAI_API_KEY": "sk-a", "TOKENSWARM_API_KEY": "sk-b"})
    assert s.headers["Authorization"] == "Bearer sk-b"
    s = from_options(opts(api_key="sk-flag"), environ={"TOKENSWARM_API_KEY": "sk-b"})
    assert s.headers["Authorization"] == "Bearer sk-flag"
    pub = s.public()
    assert pub["headers"] == {"Authorization": REDACTED}
    assert "sk-flag" not in repr(pub)


def test_headers_from_flags_and_environment():
    s = from_options(opts(header=["X-A: 1", "Authorization: Basic abc"]), environ={"TOKENSWARM_HEADER": "X-B: two"})
    assert s.headers == {"X-B": "two", "X-A": "1", "Authorization": "Basic abc"}
    assert parse_header("K:  v  with spaces") == ("K", "v  with spaces")


def test_requests_ask_for_no_compression_unless_told():
    s = from_options(opts(), environ={})
    assert s.stream_headers()["Accept-Encoding"] == "identity" and s.await_usage
    s = from_options(opts(accept_encoding="gzip"), environ={})
    assert s.stream_headers()["Accept-Encoding"] == "gzip" and s.public()["accept_encoding"] == "gzip"
    s = from_options(opts(header=["accept-encoding: br"]), environ={})  # a header given wins, whatever its case
    assert [(k, v) for k, v in s.stream_headers().items() if k.lower() == "accept-encoding"] == [
        ("accept-encoding", "br")]
    assert from_options(opts(metrics_bind="0.0.0.0"), environ={}).metrics_bind == "0.0.0.0"


@pytest.mark.parametrize("text,seconds", [("30", 30), ("30s", 30), ("2m", 120), ("1h30m", 5400), ("1.5s", 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0", "0s", "-5", "5x"])
def test_bad_durations(text):
    with pytest.raises(SettingsError, match="bad --duration"):
        parse_duration(text)


def test_the_locust_command_line_carries_options_off_their_defaults_and_never_a_secret():
    values = {"engine": "vllm", "max_tokens": 7, "input_len": 128, "ignore_eos": True, "no_backoff": False,
              "header": ["Authorization: Bearer sk-abcdef"], "api_key": "sk-123456", "output_len": -1}
    argv = to_argv(values)
    assert argv == ["--engine", "vllm", "--max-tokens", "7", "--ignore-eos", "--output-len", "-1"]
    assert not any("sk-" in a for a in argv)
    secrets = to_env(values, secret_only=True)
    assert secrets == {"TOKENSWARM_HEADER": "Authorization: Bearer sk-abcdef", "TOKENSWARM_API_KEY": "sk-123456"}
    # what the child's parser makes of that command line is what was asked for
    p = argparse.ArgumentParser()
    add_options(p)
    ns = p.parse_args(argv)
    assert (ns.engine, ns.max_tokens, ns.ignore_eos, ns.output_len, ns.input_len) == ("vllm", 7, True, -1, 128)


def test_options_round_trip_through_the_environment():
    values = {"engine": "vllm", "max_tokens": 7, "ignore_eos": True, "header": ["A: 1", "B: 2"], "api_key": "k"}
    env = to_env(values)
    assert env["TOKENSWARM_ENGINE"] == "vllm" and env["TOKENSWARM_IGNORE_EOS"] == "true"
    by_dest = {o.dest: o for o in OPTIONS}
    assert env_default(by_dest["header"], env) == ["A: 1", "B: 2"]
    assert env_default(by_dest["ignore_eos"], env) is True
    p = argparse.ArgumentParser()
    import os

    old = dict(os.environ)
    try:
        os.environ.update(env)
        add_options(p)
        ns = p.parse_args([])
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert ns.engine == "vllm" and ns.max_tokens == 7 and ns.ignore_eos is True and ns.api_key == "k"


@pytest.mark.parametrize("kw,msg", [
    ({"levels": "1,2", "rates": "1"}, "not both"),
    ({"level_duration": "10s"}, "--level-duration needs --levels or --rates"),
    ({"levels": "1,2"}, "--level-duration and/or --level-requests"),
    ({"levels": "1,2", "level_duration": "5s", "requests": 10}, "--requests is for a single level"),
    ({"levels": "1,2", "level_duration": "5s", "duration": "1m"}, "--duration is for a single level"),
    ({"levels": "1,2", "level_duration": "0s"}, "bad --level-duration"),
    ({"rates": "1", "level_duration": "5s", "max_concurrency": 0}, "bad --max-concurrency 0"),
    ({"arrival": "uniform"}, "bad --arrival 'uniform'"),
    ({"priority": "urgent"}, "bad --priority 'urgent': choose one of normal, high, realtime"),
    ({"timing": "sometimes"}, "bad --timing 'sometimes': choose one of read, capture"),
    ({"burstiness": 0.0}, "bad --burstiness"),
    ({"slo": "ttfx=3"}, "bad --slo"),
    ({"min_lifetimes": 3.0}, "--min-lifetimes 3 ends each level of a sweep: give --levels or --rates"),
    ({"precision": 5.0}, "--precision 5 ends each level of a sweep"),
    ({"levels": "1,2", "level_duration": "5s", "min_lifetimes": 3.0, "max_level_duration": "4s"},
     "bad --max-level-duration '4s': shorter than --level-duration (5 s)"),
])
def test_bad_sweep_input(kw, msg):
    with pytest.raises(SettingsError) as e:
        from_options(opts(**kw), environ={})
    assert msg in str(e.value)


@pytest.mark.parametrize("host,msg", [
    ("http://192.0.2.1:8000", "--timing capture times IPv4 loopback targets only (127.0.0.0/8); 192.0.2.1 is"),
    ("https://127.0.0.1:8443", "--timing capture reads plain HTTP"),
])
def test_a_capture_off_loopback_or_over_tls_is_refused_in_one_line(host, msg):
    with pytest.raises(SettingsError) as e:
        from_options(opts(timing="capture"), host=host, environ={})
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_sweep_settings_and_default_warmup():
    s = from_options(opts(levels="1,2,4", level_duration="30s", slo="ttft=500"), environ={})
    assert s.mode == "concurrency" and s.plan.levels == [1, 2, 4]
    assert s.warmup_s == pytest.approx(6.0)  # 20 % of the level duration
    pub = s.public()
    assert pub["levels"] == ["1", "2", "4"] and pub["slo"] == {"ttft": 500.0} and pub["warmup_s"] == 6.0
    r = from_options(opts(rates="0.5,2", level_requests=40, warmup=1.5), environ={})
    assert r.mode == "rate" and r.plan.levels == [0.5, 2.0] and r.warmup_s == 1.5
    assert r.public()["rates"] == ["0.5", "2"]


def test_a_capacity_probe_and_a_precise_level_always_have_a_longest_duration():
    # a probe whose intervals never decide (a level right at the SLO) must still end: 10 x the level, >= 2 min
    cap = from_options(opts(levels="4,64", level_duration="5s", slo="ttft=240", capacity=True), environ={})
    assert cap.max_level_duration_s == 120.0
    long = from_options(opts(levels="4,64", level_duration="30s", slo="ttft=240", capacity=True), environ={})
    assert long.max_level_duration_s == 300.0
    assert from_options(opts(levels="1,2", level_duration="5s"), environ={}).max_level_duration_s is None
    given = from_options(opts(levels="4,64", level_duration="5s", slo="ttft=240", capacity=True,
                              max_level_duration="40s"), environ={})
    assert given.max_level_duration_s == 40.0


def test_closed_loop_first_sends_spread_over_at_most_a_fifth_of_the_shortest_timed_level():
    assert from_options(opts(users=8, duration="10s"), environ={}).stagger_spread_s() == pytest.approx(2.0)
    sweep = from_options(opts(levels="1,2", level_duration="8s,30s"), environ={})
    assert sweep.stagger_spread_s() == pytest.approx(1.6)
    assert from_options(opts(users=8, requests=40), environ={}).stagger_spread_s() is None  # learnt from a pilot


@pytest.mark.parametrize("kw,msg", [
    ({"prefix_len": -1}, "bad --prefix-len -1"),
    ({"prefix_len": 64, "num_prefixes": 0}, "bad --num-prefixes 0"),
    ({"turns": -2}, "bad --turns -2"),
    ({"turns": 3, "turn_input_len": 0}, "bad --turn-input-len 0"),
    ({"turns": 3, "think_time": -1.0}, "bad --think-time -1.0"),
    ({"cancel_rate": 1.0}, "bad --cancel-rate 1.0"),
    ({"trace_speed": 0.0}, "bad --trace-speed 0.0"),
    ({"turns": 3, "prefix_len": 64}, "--turns and --prefix-len are different workloads"),
    ({"turns": 3, "dataset": "sonnet"}, "not --dataset sonnet"),
    ({"trace": "tests/fixtures/traces/plain.jsonl", "dataset": "sharegpt"}, "leave out --dataset"),
    ({"trace": "tests/fixtures/traces/plain.jsonl", "levels": "1,2"}, "leave out --duration, --requests"),
    ({"trace": "tests/fixtures/traces/missing.jsonl"}, "missing.jsonl"),
])
def test_bad_workload_input(kw, msg):
    with pytest.raises(SettingsError) as e:
        with_trace(from_options(opts(**kw), environ={}))  # build reads no file; with_trace reads the trace
    assert msg in str(e.value)
    assert "\n" not in str(e.value)


def test_trace_gives_one_rate_level_lasting_the_trace():
    from tokenswarm.workloads import load_trace

    path = "tests/fixtures/traces/plain.jsonl"
    entries = load_trace(path)
    unread = from_options(opts(trace=path), environ={})
    assert unread.plan is None and unread.trace_requests == 0  # from_options() reads no file
    s = with_trace(unread)
    assert s.mode == "rate" and len(s.plan.levels) == 1
    assert s.plan.level_duration_s == pytest.approx(entries[-1].offset_s + 2.0)
    fast = with_trace(from_options(opts(trace=path, trace_speed=2.0), environ={}))
    assert fast.plan.level_duration_s == pytest.approx(entries[-1].offset_s / 2 + 2.0)


def test_one_level_duration_per_level():
    s = from_options(opts(levels="1,8,64", level_duration="10s,20s,1m"), environ={})
    assert s.plan.level_durations_s == [10, 20, 60] and s.plan.duration(2) == 60
    assert not s.plan.level_done(1, 19.9, 0) and s.plan.level_done(1, 20.0, 0)
    assert s.warmups_s == pytest.approx([2, 4, 12])  # 20 % of each level
    assert s.public()["level_durations_s"] == [10, 20, 60]
    assert from_options(opts(levels="1,8,64", level_duration="10s,20s,1m", warmup=5), environ={}).warmups_s is None
    with pytest.raises(SettingsError, match="gives 2 durations for 3 levels"):
        from_options(opts(levels="1,8,64", level_duration="10s,20s"), environ={})
    with pytest.raises(SettingsError, match="bad --level-duration 'x'"):
        from_options(opts(levels="1,8", level_duration="10s,x"), environ={})


def test_one_request_count_per_level():
    s = from_options(opts(levels="1,8,64", level_requests="20,40,400"), environ={})
    plan = s.plan
    assert plan.level_requests_each == [20, 40, 400] and [plan.requests(i) for i in range(3)] == [20, 40, 400]
    assert not plan.level_done(2, 1e6, 399) and plan.level_done(2, 0.0, 400) and plan.level_done(0, 0.0, 20)
    assert s.public()["level_requests_each"] == [20, 40, 400] and "20/40/400 requests" in plan.describe()
    one = from_options(opts(levels="1,8", level_requests="30"), environ={}).plan
    assert one.level_requests == 30 and one.level_requests_each is None and one.requests(1) == 30
    # a 0 leaves that level to the duration; without one it would never end
    mixed = from_options(opts(levels="1,8", level_requests="0,50", level_duration="1m"), environ={}).plan
    assert mixed.level_done(0, 60.0, 0) and not mixed.level_done(0, 59.0, 10**6) and mixed.level_done(1, 1.0, 50)
    for kw, msg in (({"level_requests": "20,40"}, "gives 2 counts for 3 levels"),
                    ({"level_requests": "20,x,5"}, "bad --level-requests '20,x,5': 'x' is not a whole number"),
                    ({"level_requests": "20,-1,5"}, "'-1' must be 0 or more"),
                    ({"level_requests": "20,0,5"}, "gives 0 for a level and there is no --level-duration")):
        with pytest.raises(SettingsError, match=msg):
            from_options(opts(levels="1,8,64", **kw), environ={})


def test_a_fresh_seed_per_run_unless_given():
    from tokenswarm.settings import with_fresh_seed

    built = from_options(opts(), environ={})
    first, again = with_fresh_seed(built), with_fresh_seed(built)  # the next test (web UI): a new one
    assert first.seed_drawn and first.seed != again.seed and first.dataset.seed == first.seed
    assert again.public()["seed"] == again.seed and again.public()["seed_drawn"] is True
    given = with_fresh_seed(from_options(opts(seed="1234"), environ={}))
    assert given.seed == 1234 and not given.seed_drawn
    assert from_options(opts(seed=7), environ={}).seed == 7  # an int from code paths without a parser
    with pytest.raises(SettingsError, match="bad --seed 'x1': give a whole number"):
        from_options(opts(seed="x1"), environ={})


def test_settings_travel_whole_and_come_back_equal():
    import json

    from tokenswarm.settings import from_wire, to_wire, with_fresh_seed

    cases = [
        opts(),
        opts(engine="vllm", model="m", api_key="sk-wire-secret", header=["X-A: 1"], levels="1,8",
             level_duration="10s,20s", slo="ttft=500,tpot=50", extra_body='{"top_k": 5}', temperature=0.5),
        opts(rates="0.5,2", level_requests="40", arrival="gamma", burstiness=0.5, dataset="sharegpt",
             dataset_path=os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "datasets",
                                       "sharegpt.json"), prefix_len=16, num_prefixes=3, warmup=1.5),
        opts(engine="trtllm", model="ensemble", server_metrics="none"),
        opts(dialect="template", body_template='{"p": "{prompt}", "n": {max_tokens}}', text_path="out.text"),
    ]
    for o in cases:
        s = with_fresh_seed(from_options(o, environ={}))
        wire = to_wire(s)
        back = from_wire(json.loads(json.dumps(wire)))  # as JSON (the command line's hand-over) and msgpack alike
        assert to_wire(back) == wire
        assert back.public() == s.public() and back.headers == s.headers and back.seed == s.seed
        assert back.dialect.name == s.dialect.name and back.dialect.config() == s.dialect.config()
        assert back.target == s.target and back.plan == s.plan and back.request == s.request
    assert "sk-wire-secret" in json.dumps(to_wire(from_options(cases[1], environ={})))  # workers need the key


def test_settings_of_another_layout_are_refused_in_one_line():
    from tokenswarm.settings import WIRE_VERSION, from_wire, to_wire

    wire = to_wire(from_options(opts(), environ={}))
    with pytest.raises(SettingsError, match=f"layout 99 .*this process reads layout {WIRE_VERSION}"):
        from_wire({**wire, "version": 99})
    bad = {**wire, "settings": {**wire["settings"], "no_such_field": 1}}
    with pytest.raises(SettingsError, match="do not fit .*no_such_field"):
        from_wire(bad)
    with pytest.raises(SettingsError, match="not tokenswarm settings"):
        from_wire([1, 2])


def test_the_embedded_engine_and_a_locustfile_dialect_derive_the_route_again():
    from tokenswarm.settings import with_dialect, with_host

    s = from_options(opts(), environ={})  # sim preset: its default URL until the engine listens
    moved = with_host(s, "http://127.0.0.1:41234")
    assert moved.url == "http://127.0.0.1:41234/v1/chat/completions"
    assert moved.server_metrics == "http://127.0.0.1:41234/metrics"
    completions = with_dialect(moved, "openai-completions")
    assert completions.dialect.name == "openai-completions" and completions.endpoint == "/v1/completions"
    assert with_dialect(moved, "") is moved  # no dialect declared
    given = from_options(opts(dialect="openai-chat"), environ={})
    assert with_dialect(given, "openai-completions") is given  # --dialect wins over the locustfile
    v1 = with_host(from_options(opts(engine="vllm"), environ={}), "http://h:8000/v1")
    assert v1.url == "http://h:8000/v1/chat/completions"  # one /v1, not two


@pytest.mark.parametrize("opt", [o for o in OPTIONS if o.check is not None], ids=lambda o: o.flag)
def test_every_declared_constraint_is_enforced_by_build_with_one_line(opt):
    rng = opt.check
    bad = rng.lo if rng.lo_open else rng.lo - 1 if rng.lo is not None else rng.hi + 1
    with pytest.raises(SettingsError) as e:
        from_options(opts(**{opt.dest: opt.type(bad)}), environ={})
    assert str(e.value) == f"bad {opt.flag} {opt.type(bad)}: {rng.words}"
    from_options(opts(**{opt.dest: opt.default}), environ={})  # the default itself is allowed


def test_anthropic_messages_sends_its_key_as_x_api_key_with_its_version():
    s = from_options(opts(engine="anthropic", model="claude"), environ={"ANTHROPIC_API_KEY": "sk-ant-env1"})
    assert s.url == "https://api.anthropic.com/v1/messages" and s.dialect.name == "anthropic-messages"
    assert s.headers == {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-env1"}
    assert "sk-ant-env1" not in repr(s.public())
    # --dialect on an engine serving the API: the dialect's path; --api-key wins over the environment
    s = from_options(opts(engine="vllm", dialect="anthropic-messages", api_key="sk-flag1", model="m"),
                     environ={"ANTHROPIC_API_KEY": "sk-ant-env1"})
    assert s.url == "http://127.0.0.1:8000/v1/messages" and s.headers["x-api-key"] == "sk-flag1"
    assert "Authorization" not in s.headers
    # a gateway taking a bearer token on its Anthropic route: the user's header is kept as given
    s = from_options(opts(engine="litellm", dialect="anthropic-messages", header=["anthropic-version: 2024-01-01"],
                          model="m"), environ={})
    assert s.headers == {"anthropic-version": "2024-01-01"}
    assert s.url == "http://127.0.0.1:4000/v1/messages"


def test_openai_responses_on_presets():
    s = from_options(opts(engine="openai", dialect="openai-responses", model="gpt-5"),
                     environ={"OPENAI_API_KEY": "sk-o1"})
    assert s.url == "https://api.openai.com/v1/responses"  # one /v1
    assert s.headers == {"Authorization": "Bearer sk-o1"}
    assert s.request.max_tokens_field == ""  # the dialect's own: max_output_tokens
    assert s.public()["max_tokens_field"] == "max_output_tokens"
    assert from_options(opts(engine="sglang", dialect="openai-responses"), environ={}).url == (
        "http://127.0.0.1:30000/v1/responses")


def test_the_max_tokens_field_is_the_presets_then_the_flags():
    from tokenswarm.datasets import Prompt

    p = Prompt("p", "x")
    s = from_options(opts(engine="openai", model="o3"), environ={})
    body = s.dialect.body(p, s.request)
    assert body["max_completion_tokens"] == 128 and "max_tokens" not in body
    # the preset's field is for its own dialect: the legacy completions API takes max_tokens
    s = from_options(opts(engine="openai", model="o3", dialect="openai-completions"), environ={})
    assert "max_tokens" in s.dialect.body(p, s.request)
    s = from_options(opts(engine="openai", model="m", max_tokens_field="max_tokens"), environ={})
    assert "max_tokens" in s.dialect.body(p, s.request)
    s = from_options(opts(engine="vllm", model="m", max_tokens_field="max_completion_tokens"), environ={})
    assert s.dialect.body(p, s.request)["max_completion_tokens"] == 128
    with pytest.raises(SettingsError, match="bad --max-tokens-field 'max tokens'"):
        from_options(opts(max_tokens_field="max tokens"), environ={})


def test_extra_body_null_removes_a_field_and_stream_usage_can_be_left_out():
    from tokenswarm.datasets import Prompt

    p = Prompt("p", "x")
    s = from_options(opts(extra_body='{"max_tokens": null, "max_completion_tokens": 9, "top_k": 5}'), environ={})
    body = s.dialect.body(p, s.request)
    assert "max_tokens" not in body and body["max_completion_tokens"] == 9 and body["top_k"] == 5
    assert body["stream_options"] == {"include_usage": True}
    s = from_options(opts(no_stream_usage=True), environ={})
    assert "stream_options" not in s.dialect.body(p, s.request) and s.public()["stream_usage"] is False
    s = from_options(opts(dialect="sglang-generate", extra_body='{"stream": null}'), environ={})
    assert "stream" not in s.dialect.body(p, s.request)


def test_a_locustfile_dialect_moves_the_key_to_its_header():
    from tokenswarm.settings import with_dialect

    s = from_options(opts(api_key="sk-moved1"), environ={})
    a = with_dialect(s, "anthropic-messages")
    assert a.headers == {"anthropic-version": "2023-06-01", "x-api-key": "sk-moved1"}
    back = with_dialect(from_options(opts(engine="anthropic", model="c", api_key="sk-moved1"), environ={}),
                        "openai-chat")
    assert back.headers == {"Authorization": "Bearer sk-moved1"}
    basic = with_dialect(from_options(opts(header=["Authorization: Basic abcdef"]), environ={}), "anthropic-messages")
    assert basic.headers == {"Authorization": "Basic abcdef", "anthropic-version": "2023-06-01"}


def test_whole_answers_and_batches_only_where_the_api_has_them():
    s = from_options(opts(dialect="rerank", batch_size=8), environ={})
    assert s.url == "http://127.0.0.1:8000/v1/rerank" and s.request.batch_size == 8
    assert s.public()["stream"] is False and s.public()["batch_size"] == 8
    assert from_options(opts(no_stream=True), environ={}).public()["stream"] is False
    with pytest.raises(SettingsError, match="bad --no-stream: the sglang-generate dialect reads streams only"):
        from_options(opts(dialect="sglang-generate", no_stream=True), environ={})
    with pytest.raises(SettingsError, match="bad --batch-size 4: the openai-chat dialect sends one input"):
        from_options(opts(batch_size=4), environ={})


def test_gpu_metrics_is_checked_and_recorded_without_userinfo():
    s = from_options(opts(gpu_metrics="http://user:secret@gpu-host:9400/metrics?token=x"))
    assert s.gpu_metrics.startswith("http://user:secret@")  # the scraper drops userinfo itself
    assert s.public()["gpu_metrics"] == "http://gpu-host:9400/metrics"
    assert from_options(opts(gpu_metrics="none")).gpu_metrics == ""
    assert from_options(opts()).public()["gpu_metrics"] is None
    with pytest.raises(SettingsError, match=r"bad --gpu-metrics 'ftp://h/m'"):
        from_options(opts(gpu_metrics="ftp://h/m"))


def test_the_engines_metrics_url_is_recorded_without_userinfo():
    s = from_options(opts(engine="vllm", model="m", server_metrics="http://user:pw-secret1@h:8000/metrics?t=1"),
                     environ={})
    assert s.server_metrics.startswith("http://user:pw-secret1@")  # the scraper drops userinfo itself
    assert s.public()["server_metrics"] == "http://h:8000/metrics" and "pw-secret1" not in repr(s.public())
