"""Targets (tokenswarm.http.target): base URLs parsed, errors naming what is wrong with the URL."""

import pytest

from tokenswarm.http.target import BadURL, Target


@pytest.mark.parametrize("url,msg", [
    ("localhost:8000", "expected a URL"),
    ("ftp://x", "scheme must be http or https"),
    ("http://", "no host name"),
    ("http://x:99999", "port"),
])
def test_bad_urls_name_the_problem(url, msg):
    with pytest.raises(BadURL, match=msg):
        Target.parse(url)


def test_target_keeps_a_path_prefix():
    t = Target.parse("https://api.example.com/v1/")
    assert (t.host, t.port, t.base_path) == ("api.example.com", 443, "/v1")
    assert t.url("/chat/completions") == "https://api.example.com/v1/chat/completions"




def test_errors_name_the_url_not_an_option():
    # the caller (settings) says which option the URL came from
    with pytest.raises(BadURL) as e:
        Target.parse("localhost:8000")
    assert str(e.value).startswith("'localhost:8000': ") and "--" not in str(e.value)


def test_urls_keep_no_userinfo_or_query_and_bracket_ipv6():
    t = Target.parse("http://user:s3cret-pass@example.com:8080/base?token=abc")
    assert t.url("/x") == "http://example.com:8080/base/x"
    assert "s3cret" not in t.netloc + t.url("")
    v6 = Target.parse("http://[::1]:8000")
    assert (v6.host, v6.netloc, v6.url("/m")) == ("::1", "[::1]:8000", "http://[::1]:8000/m")
    assert Target.parse("https://h:443").netloc == "h"  # the scheme's default port is left out
