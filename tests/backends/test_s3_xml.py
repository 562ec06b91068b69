"""The fast ListObjectsV2 page reader gives ElementTree's answer, or none (then ElementTree
reads the page): over generated pages in the shape S3 writes, every XML character, entity
and numeric reference included; and over pages outside that shape; and over the pages of a
real moto server (odd keys, a folder placeholder, delimiter listings)."""

from __future__ import annotations

import urllib.parse
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shardcache.backends.cloud import s3_xml
from shardcache.backends.cloud.s3 import parse_list_page, parse_list_page_tree

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult '
    'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>ds/</Prefix>'
    "<KeyCount>{n}</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType>"
    "<IsTruncated>{truncated}</IsTruncated>"
)

#: characters XML 1.0 allows (no surrogates, no U+FFFE/U+FFFF), ASCII weighted up
xml_chars = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.sampled_from("\t\n\r&<>\"'%+ "),
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff").filter(
        lambda c: c in "\t\n\r" or ord(c) >= 0x20
    ),
)


def _escaped(text: str, draw_ref: bool) -> str:
    """XML-escape `text` as a serialiser may: entities, and (if `draw_ref`) every character
    outside ASCII and every `\\r` as a numeric reference (what keeps a `\\r` a `\\r`)."""
    out = escape(text, {'"': "&quot;", "'": "&apos;", "\r": "&#13;"})
    if draw_ref:
        out = "".join(c if ord(c) < 0x80 else f"&#x{ord(c):X};" for c in out)
    return out


@st.composite
def pages(draw: st.DrawFn) -> bytes:
    url = draw(st.booleans())
    objects = draw(
        st.lists(
            st.tuples(
                st.text(xml_chars, min_size=1, max_size=12),
                st.integers(0, 10**12),
                st.one_of(st.just(""), st.text("0123456789abcdef-", min_size=1, max_size=36)),
            ),
            max_size=8,
        )
    )
    prefixes = draw(st.lists(st.text(xml_chars, min_size=1, max_size=8), max_size=3))
    refs = draw(st.booleans())
    sep = draw(st.sampled_from(["", "\n  "]))
    parts = [_HEAD.format(n=len(objects), truncated=draw(st.sampled_from(["true", "false"])))]

    def text(t: str) -> str:
        return _escaped(urllib.parse.quote(t, safe="/") if url else t, refs)

    for key, size, etag in objects:
        quoted = _escaped('"' + etag + '"', refs)
        etag_xml = f"<ETag>{quoted}</ETag>{sep}" if etag else ""
        parts.append(
            f"<Contents>{sep}<Key>{text(key)}</Key>{sep}<LastModified>2026-11-30T00:00:00.000Z"
            f"</LastModified>{sep}{etag_xml}<Size>{size}</Size>{sep}<StorageClass>STANDARD"
            f"</StorageClass>{sep}</Contents>{sep}"
        )
    for p in prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{text(p)}/</Prefix></CommonPrefixes>")
    parts.append("</ListBucketResult>\n")
    return "".join(parts).encode()


@settings(max_examples=300, deadline=None)
@given(pages())
def test_fast_reader_answers_as_elementtree_over_s3_shaped_pages(body):
    assert s3_xml.parse_fast(body) is not None
    assert parse_list_page(body) == parse_list_page_tree(body)


_PLAIN = (
    _HEAD.format(n=1, truncated="false")
    + "<Contents><Key>ds/a</Key><ETag>&quot;x&quot;</ETag><Size>3</Size></Contents>"
    "</ListBucketResult>"
)


@pytest.mark.parametrize(
    "old, new",
    [
        ("<Key>ds/a</Key>", "<Key>ds/<!-- c -->a</Key>"),
        ("<Key>ds/a</Key>", "<Key><![CDATA[ds/a]]></Key>"),
        ("<Key>ds/a</Key>", '<Key a="1">ds/a</Key>'),
        ("<Key>ds/a</Key>", "<Key >ds/a</Key >"),
        ("<Size>3</Size>", "<Size>3</Size><ETag>&quot;y&quot;</ETag>"),
        ("<ETag>&quot;x&quot;</ETag><Size>3</Size>", "<Size>3</Size><ETag>&quot;x&quot;</ETag>"),
        ("<Key>ds/a</Key>", "<Key>ds/a</Key><Key>ds/b</Key>"),
        ("<Contents>", '<Contents x="1">'),
        ('xmlns="', 'xmlns:s3="'),
        ('encoding="UTF-8"', 'encoding="ISO-8859-1"'),
        ("</ListBucketResult>", "</ListBucketResul"),
        ('xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', ""),
        ("<Contents><Key>", "<Contents>\f<Key>"),
    ],
)
def test_pages_outside_the_plain_shape_go_to_elementtree(old, new):
    assert s3_xml.parse_fast(_PLAIN.encode()) is not None
    odd = _PLAIN.replace(old, new, 1).encode()
    assert odd != _PLAIN.encode()
    assert s3_xml.parse_fast(odd) is None


@pytest.mark.parametrize("ref", ["&bogus;", "&#0;", "&#xFFFE;", "& ", "&#x110000;"])
def test_a_reference_xml_refuses_is_refused_by_both(ref):
    body = _PLAIN.replace("<Key>ds/a", f"<Key>ds/a{ref}", 1).encode()
    assert s3_xml.parse_fast(body) is None
    with pytest.raises(Exception):  # noqa: B017 - ElementTree's ParseError or ValueError
        parse_list_page(body)


def test_moto_pages_read_the_same_both_ways(s3_bucket, s3_server):
    """Real pages of a real server: odd characters (url-encoded by moto), a placeholder, a
    delimiter listing."""
    import boto3

    keys = ["ds/a&b", "ds/<lt>", "ds/q'\"", "ds/ä ö", "ds/plus+sign", "ds/pct%41", "ds/sub/"]
    keys += [f"ds/d{i}/x" for i in range(3)]
    s3_bucket.put({k: (b"" if k.endswith("/") else b"x") for k in keys})
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1")
    bodies = []

    def keep(response_dict, **_):
        bodies.append(response_dict["body"])

    client.meta.events.register("before-parse.s3.ListObjectsV2", keep)
    for delimiter in ("", "/"):
        client.list_objects_v2(
            Bucket=s3_bucket.name, Prefix="ds/", Delimiter=delimiter, EncodingType="url"
        )
    assert len(bodies) == 2
    for body in bodies:
        assert s3_xml.parse_fast(body) is not None
        assert parse_list_page(body) == parse_list_page_tree(body)
    flat = parse_list_page(bodies[0])
    assert [o.key for o in flat.objects] == sorted(k for k in keys if k != "ds/sub/")
    assert parse_list_page(bodies[1]).prefixes == ["ds/d0/", "ds/d1/", "ds/d2/", "ds/sub/"]
