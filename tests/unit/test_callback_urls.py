"""A job's callback_url: only http(s), and only to the hosts an operator allows when they name some."""

from __future__ import annotations

import pytest
from starlette.datastructures import FormData

from tuned_whisper.serving.errors import ApiError
from tuned_whisper.serving.jobs_api import _callback_url


def checked(url: str, hosts: tuple[str, ...] = ()) -> str | None:
    return _callback_url(FormData([("callback_url", url)]), hosts)


def test_any_http_host_is_posted_to_when_no_hosts_are_named() -> None:
    assert checked("https://hooks.example.org/done?job=1") == "https://hooks.example.org/done?job=1"
    assert checked("  ") is None


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "https://", "example.org/x"])
def test_other_schemes_and_hostless_urls_are_400s(url: str) -> None:
    with pytest.raises(ApiError) as refused:
        checked(url)
    assert refused.value.status_code == 400 and refused.value.param == "callback_url"


def test_named_hosts_and_their_subdomains_are_the_only_ones_allowed() -> None:
    hosts = ("ci.internal", ".example.com")
    assert checked("http://ci.internal:8080/hook", hosts)
    assert checked("https://hooks.Example.com/x", hosts)
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "https://example.com.evil.org/x",
        "http://127.0.0.1/",
    ):
        with pytest.raises(ApiError) as refused:
            checked(url, hosts)
        assert refused.value.code == "callback_host_not_allowed"


def test_a_callback_url_longer_than_2048_characters_is_refused() -> None:
    with pytest.raises(ApiError):
        checked("https://example.org/" + "a" * 2048)
