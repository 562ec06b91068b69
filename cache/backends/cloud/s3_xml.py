"""A ListObjectsV2 page (`encoding-type=url`) read without building an XML tree (pure).

Why hand-written: a parallel listing of a large prefix is CPU-bound on a small node, and the
page's parse was most of the client's CPU (with ElementTree, 8 ms of the 11 ms a 1,000-key
page cost, its tree of 7,000 elements and the garbage collections it sets off included; expat
with Python callbacks costs more; botocore's parser ~60 ms). S3 writes these pages in one
fixed shape (the ListBucketResult schema: no attributes on the elements read, no comments,
no CDATA, no DTD), so the fields a listing needs (`Key`, `Size`, `ETag` of each `Contents`, the
`CommonPrefixes`, `IsTruncated`) are matched by one regular expression per element in the
schema's order (one C call returns every object's fields), and their text is decoded as an
XML parser does (line ends, the five predefined entities, numeric character references),
then percent-decoded (`encoding-type=url`).

The same answer or none, for well-formed XML: `parse_fast` returns None, and the caller falls
back to ElementTree, whenever the body steps outside that shape: an encoding other than
UTF-8, a root element other than `<ListBucketResult xmlns="(S3's namespace)">` exactly, a
comment, CDATA or DTD (`<!`), a processing instruction after the declaration, a namespace
prefix (`xmlns:`), a `Contents`, `CommonPrefixes` or `IsTruncated` element the expressions do
not match whole (attributes, another order, a missing `Key` or `Size`, a second `Key`, `Size`
or `ETag`: the count of opening tags tells), a `&` that is not a reference, a character XML
forbids, or a body that does not end with `</ListBucketResult>` (a cut body). A malformed page
(a mismatched tag elsewhere, say) may be read where ElementTree would raise; S3 sends none.
`tests/backends/test_s3_xml.py` holds both parsers to the same pages, generated over all of
XML's characters.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

_REF = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_DECL = re.compile(rb'\A<\?xml version="1\.0"(?: encoding="(?i:utf-8)")?[ \t\r\n]*\?>')
_ROOT = b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
_END = b"</ListBucketResult>"
_SPACE = b" \t\r\n"  # XML's white space
#: one `Contents` in the schema's order (Key, LastModified, ETag, Checksum*, Size, then
#: StorageClass, Owner… which are skipped, as long as no second Key, Size or ETag hides there)
_OBJECT = re.compile(
    rb"<Contents>[ \t\r\n]*<Key>([^<]*)</Key>[ \t\r\n]*"
    rb"(?:<LastModified>[^<]*</LastModified>[ \t\r\n]*)?"
    rb"(?:<ETag>([^<]*)</ETag>[ \t\r\n]*)?"
    rb"(?:<Checksum(?:Algorithm|Type)>[^<]*</Checksum(?:Algorithm|Type)>[ \t\r\n]*)*"
    rb"<Size>[ \t\r\n]*([0-9]+)[ \t\r\n]*</Size>"
    rb"[^<]*(?:<(?!/Contents>|Key|Size|ETag|Contents)[^<]*)*</Contents>"
)
_PREFIX = re.compile(
    rb"<CommonPrefixes>[ \t\r\n]*<Prefix>([^<]*)</Prefix>[ \t\r\n]*</CommonPrefixes>"
)
_TRUNCATED = re.compile(rb"<IsTruncated>([^<]*)</IsTruncated>")


@dataclass(frozen=True)
class RawPage:
    """The page's fields, decoded: (key, size, etag) of each object in order, the
    `CommonPrefixes`, and whether more keys follow."""

    objects: list[tuple[str, int, str]]
    prefixes: list[str]
    truncated: bool


class _NotPlain(Exception):
    """The page is not in the plain shape: ElementTree reads it."""


def _ref(m: re.Match[str]) -> str:
    if m.group(1):
        return _NAMED[m.group(1)]
    code = int(m.group(2)) if m.group(2) else int(m.group(3), 16)
    if not _xml_char(code):
        raise _NotPlain  # ElementTree refuses it too; let it say so
    return chr(code)


def _xml_char(code: int) -> bool:
    """XML 1.0's `Char` production."""
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _chars(raw: bytes) -> str:
    """Character data as an XML parser hands it over: line ends normalised, references
    resolved, characters XML forbids refused."""
    text = raw.decode("utf-8")
    if not text.isprintable():
        if not all(map(_xml_char, map(ord, text))):
            raise _NotPlain
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "&" in text:
        text = text.replace("&quot;", '"')  # in every S3 ETag: spare it the general path
        if "&" in text:
            if "&" in _REF.sub("", text):
                raise _NotPlain
            text = _REF.sub(_ref, text)
    return text


def _url(raw: bytes) -> str:
    """A `Key` or `Prefix`: character data, then `encoding-type=url` percent-decoding."""
    text = _chars(raw)
    return urllib.parse.unquote_plus(text) if "%" in text or "+" in text else text


def parse_fast(body: bytes) -> RawPage | None:
    """The page, or None when it is not in the plain shape described above."""
    decl = _DECL.match(body)
    rest = decl.end() if decl else 0
    if (
        b"<!" in body
        or body.find(b"<?", rest) >= 0
        or b"xmlns:" in body
        or not body[rest : rest + 200].lstrip(_SPACE).startswith(_ROOT)
        or not body[-200:].rstrip(_SPACE).endswith(_END)
    ):
        return None
    found = _OBJECT.findall(body)
    raw_prefixes = _PREFIX.findall(body)
    truncated = _TRUNCATED.findall(body)
    if (
        len(found) != body.count(b"<Contents")
        or len(raw_prefixes) != body.count(b"<CommonPrefixes")
        or len(truncated) != body.count(b"<IsTruncated")
    ):
        return None
    try:
        objects = [(_url(key), int(size), _chars(etag)) for key, etag, size in found]
        prefixes = [_url(p) for p in raw_prefixes]
    except (_NotPlain, UnicodeDecodeError):
        return None
    flag = truncated[0].lower() if truncated else b""  # as ElementTree's reader: no strip
    return RawPage(objects, prefixes, flag == b"true")
