"""`s3://bucket/prefix` URLs and the object names they give keys (no I/O)."""

from __future__ import annotations

import pytest

from exportd.errors import ConfigurationError
from exportd.storage.s3 import claim_segment
from exportd.storage.s3_client import S3Location


def test_a_prefix_is_put_before_every_key() -> None:
    """`s3://b/some/prefix/` names the object of key `k` `some/prefix/k`, and back."""
    location = S3Location.parse("s3://b/some/prefix/")
    assert (location.bucket, location.prefix, location.url) == (
        "b",
        "some/prefix",
        "s3://b/some/prefix",
    )
    assert location.object_name("o/j/c/f.csv") == "some/prefix/o/j/c/f.csv"
    assert location.key_of("some/prefix/o/j/c/f.csv") == "o/j/c/f.csv"


def test_a_bucket_alone_has_no_prefix() -> None:
    """`s3://b` keeps keys as they are."""
    location = S3Location.parse("s3://b")
    assert (location.root, location.object_name("o/j/c/f")) == ("", "o/j/c/f")


@pytest.mark.parametrize("url", ["s3://", "s3:///p", "s3://b/p?x=1", "s3://b/a/../c", "file:///x"])
def test_bad_urls_are_configuration_errors(url: str) -> None:
    """A URL without a bucket, with a query, or with `..` in its prefix is refused."""
    with pytest.raises(ConfigurationError):
        S3Location.parse(url)


def test_the_claim_is_a_keys_third_segment() -> None:
    """The tag of an upload in progress is read from its key, `{owner}/{job}/{claim}/…`."""
    assert claim_segment("ann/j1/c1/part-0.csv") == "c1"
    assert claim_segment("ann/j1/c1/sub/part-0.csv") == "c1"
    assert claim_segment("ann/j1/c1") == ""
