"""Attachments, without I/O: which files a customer or an agent may attach, how an upload is checked, and how a
stored attachment is served.

A chat attachment is a file a stranger chose, later opened by someone else's browser (an agent's, or the customer's
own on another page): the classic way to plant HTML or script on a trusted origin. So nothing here trusts what the
uploader *says* about the file:

* **Types**: only PNG, JPEG, GIF, WebP and PDF (:data:`ATTACHMENT_TYPES`; never SVG, HTML or anything a browser
  runs). The type is read from the bytes (:func:`sniff`: magic numbers), and the declared type must agree with it
  (:data:`TYPE_MISMATCH` otherwise): a ``.png`` that is really a PDF, or an HTML page named ``shot.png``, is refused.
* **Structure**: each type is walked far enough to refuse a truncated or malformed file (:data:`MALFORMED`): PNG
  chunks with their CRCs from ``IHDR`` to ``IEND``, JPEG segments to the scan and its end marker, the GIF trailer,
  the RIFF chunks of a WebP, the PDF header and ``%%EOF``; images with absurd dimensions (a decompression bomb) too.
  No decoder runs on the bytes: a structural walk needs no third-party parser with its own bugs.
* **Active content**: a PDF naming JavaScript, a launch action or an embedded file is refused
  (:data:`ACTIVE_CONTENT`; names written with ``#xx`` escapes are decoded first). This is a best-effort scan (it
  cannot see inside compressed object streams); what makes serving safe is the next point.
* **Serving** (:func:`download_headers`): the stored type, re-checked against the stored bytes at every download;
  ``Content-Disposition: inline`` only for an image whose bytes are that image, ``attachment`` for everything else
  (PDFs are downloaded, never rendered on our origin); ``X-Content-Type-Options: nosniff`` and a sandboxing
  :data:`ATTACHMENT_CSP` on every download, so even a file that slipped through runs nothing on the origin.
* **Names** (:func:`safe_filename`): the last path component only, no control or bidi-override characters (no
  ``gpj.exe`` trick), no characters that are special in headers or file systems, at most :data:`MAX_FILENAME_CHARS`
  characters, and an extension that matches the checked type.

Sizes are limited twice: the declared size before any byte is accepted (:func:`check_declared`), and the bytes
received (:class:`UploadAssembler`), per upload (:class:`UploadLimits`). A refusal is an :class:`UploadRefused`
whose ``code`` the widget and the console translate; nothing of a refused upload is stored (the caller stores only
what :func:`check_upload` returned).

A customer downloads with a **download token** (:func:`download_token`): an HMAC of the attachment id keyed with
the conversation's stored secret hash. The widget gets the URL in the frames of its proven connection; the token
opens that one attachment and nothing else (it is not the resume secret, which never appears in a URL), and it
stops working when the conversation is erased.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

from channels.errors import ChannelError
from dialogue.types import AVATAR_TYPES

# ------------------------------------------------------------------------------------------------------- types
PNG: Final = "image/png"
JPEG: Final = "image/jpeg"
GIF: Final = "image/gif"
WEBP: Final = "image/webp"
PDF: Final = "application/pdf"

#: The types an attachment may have, with the file extensions each is saved under (the first one is added to a
#: name that has none of them).
ATTACHMENT_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    PNG: (".png",),
    JPEG: (".jpg", ".jpeg"),
    GIF: (".gif",),
    WEBP: (".webp",),
    PDF: (".pdf",),
}
IMAGE_TYPES: Final = frozenset({PNG, JPEG, GIF, WEBP})
#: Other spellings browsers and tools declare for the same types.
TYPE_ALIASES: Final[Mapping[str, str]] = {
    "image/jpg": JPEG, "image/pjpeg": JPEG, "application/x-pdf": PDF, "image/x-png": PNG,
}

DEFAULT_MAX_BYTES: Final = 5 * 1024 * 1024
DEFAULT_MAX_PENDING_BYTES: Final = 64 * 1024 * 1024
MAX_FILENAME_CHARS: Final = 100
MAX_DECLARED_NAME_CHARS: Final = 1000  # a longer declared name is a client bug or an attack: refused, not cut
MAX_IMAGE_SIDE: Final = 20_000
MAX_IMAGE_PIXELS: Final = 50_000_000  # a 7000 x 7000 PNG of zeros compresses to kilobytes and decodes to 200 MB

#: The Content-Security-Policy of every download: nothing may run or load (``sandbox`` also gives the document an
#: opaque origin, so a file rendered by mistake could not read the origin's cookies or storage).
ATTACHMENT_CSP: Final = "default-src 'none'; img-src 'self'; sandbox; frame-ancestors 'none'; base-uri 'none'"

# ----------------------------------------------------------------------------------------------- refusal codes
TOO_LARGE: Final = "too_large"
EMPTY: Final = "empty"
UNSUPPORTED_TYPE: Final = "unsupported_type"
TYPE_MISMATCH: Final = "type_mismatch"
MALFORMED: Final = "malformed"
ACTIVE_CONTENT: Final = "active_content"
BAD_UPLOAD: Final = "bad_upload"  # the upload frames themselves broke the protocol (more bytes than declared...)

#: Customer-safe English text of each refusal (the widget and the console show their own translations).
REFUSAL_MESSAGES: Final[Mapping[str, str]] = {
    TOO_LARGE: "The file is too large.",
    EMPTY: "The file is empty.",
    UNSUPPORTED_TYPE: "Only PNG, JPEG, GIF and WebP images and PDF files can be attached.",
    TYPE_MISMATCH: "The file's content does not match its type.",
    MALFORMED: "The file is damaged or incomplete.",
    ACTIVE_CONTENT: "PDF files with scripts, launch actions or embedded files cannot be attached.",
    BAD_UPLOAD: "The upload was not sent as the protocol says.",
}


class UploadRefused(ChannelError):
    """An upload that is not stored: ``code`` is one of :data:`REFUSAL_MESSAGES`' keys, ``reason`` says why in
    English, naming limits and types, never the file's name or content."""

    def __init__(self, code: str, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or REFUSAL_MESSAGES.get(code, code)
        super().__init__(f"{code}: {self.reason}")

    def __repr__(self) -> str:
        return f"UploadRefused(code={self.code!r})"


@dataclass(frozen=True)
class UploadLimits:
    """The limits of uploads on one server.

    ``max_bytes``: largest file. ``types``: the allowed types (a subset of :data:`ATTACHMENT_TYPES`).
    ``max_pending_bytes``: bytes of unfinished uploads one server process holds in memory at once (declared sizes,
    reserved when an upload starts; beyond it a new upload is answered ``busy``). ``timeout``: seconds the bytes of
    one upload may take to arrive. ``rate``/``burst``: uploads per second and connection (a token bucket).
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    types: frozenset[str] = field(default_factory=lambda: frozenset(ATTACHMENT_TYPES))
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    timeout: float = 120.0
    rate: float = 0.2
    burst: int = 5

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if not self.types or not set(self.types) <= set(ATTACHMENT_TYPES):
            raise ValueError(f"types must be a non-empty subset of {sorted(ATTACHMENT_TYPES)}")
        if self.max_pending_bytes < self.max_bytes:
            raise ValueError("max_pending_bytes must be >= max_bytes")
        if not self.timeout > 0 or not self.rate > 0 or self.burst < 1:
            raise ValueError("timeout and rate must be > 0, burst >= 1")


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed :func:`check_upload`: what may be stored."""

    filename: str = field(repr=False)  # the customer's (or agent's) words: never in a repr
    content_type: str
    data: bytes = field(repr=False)
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def image(self) -> bool:
        return self.content_type in IMAGE_TYPES


# --------------------------------------------------------------------------------------------------- checking
def normalise_type(declared: str | None) -> str | None:
    """The media type ``declared`` names (lower-case, parameters dropped, aliases resolved); ``None`` for none."""
    if not declared:
        return None
    base = declared.split(";", 1)[0].strip().lower()
    return TYPE_ALIASES.get(base, base) or None


def safe_filename(name: str | None, content_type: str) -> str:
    """A file name fit to store, show and send in a header: the last path component of ``name``, NFC, without
    control, format (bidi overrides, zero-width) or header/file-system special characters, white space collapsed,
    no leading dots, at most :data:`MAX_FILENAME_CHARS` characters, ending in an extension of ``content_type``
    (added when it has another: ``report.html`` holding a PDF becomes ``report.html.pdf``)."""
    raw = unicodedata.normalize("NFC", name or "")
    raw = re.split(r"[/\\]", raw)[-1]
    kept = []
    for char in raw:
        category = unicodedata.category(char)
        if category[0] in "CZ" and char != " ":  # control, format, surrogate, private use, odd spaces
            kept.append(" " if category[0] == "Z" or char.isspace() else "")
        elif char in '<>:"|?*%;`':
            kept.append("_")
        else:
            kept.append(char)
    clean = " ".join("".join(kept).split()).lstrip(". ").rstrip(". ")
    extensions = ATTACHMENT_TYPES.get(content_type, ())
    stem, dot, suffix = clean.rpartition(".")
    if not dot or ("." + suffix.lower()) not in extensions:
        stem, suffix = clean, extensions[0][1:] if extensions else "bin"
    stem = (stem or "attachment")[: MAX_FILENAME_CHARS - len(suffix) - 1].rstrip(". ") or "attachment"
    return f"{stem}.{suffix.lower()}"


def check_declared(filename: str | None, content_type: str | None, size: int, limits: UploadLimits) -> str:
    """Check what a client declares before it sends a byte: the size (:data:`TOO_LARGE`, :data:`EMPTY`), the type
    (:data:`UNSUPPORTED_TYPE`) and the name's length (:data:`BAD_UPLOAD`). Returns the normalised type."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise UploadRefused(BAD_UPLOAD, "the size must be a whole number of bytes")
    if size == 0:
        raise UploadRefused(EMPTY)
    if size > limits.max_bytes:
        raise UploadRefused(TOO_LARGE, f"the file is larger than {limits.max_bytes} bytes")
    if filename is not None and len(filename) > MAX_DECLARED_NAME_CHARS:
        raise UploadRefused(BAD_UPLOAD, f"the file name is longer than {MAX_DECLARED_NAME_CHARS} characters")
    declared = normalise_type(content_type)
    if declared is None or declared not in limits.types:
        raise UploadRefused(UNSUPPORTED_TYPE)
    return declared


def check_upload(data: bytes, content_type: str | None, filename: str | None, limits: UploadLimits) -> CheckedFile:
    """Check a whole file (see the module docstring): its size, its type from its bytes against the declared
    ``content_type``, its structure, a PDF's active content. Returns what may be stored, with a safe name; raises
    :class:`UploadRefused` otherwise."""
    if not data:
        raise UploadRefused(EMPTY)
    if len(data) > limits.max_bytes:
        raise UploadRefused(TOO_LARGE, f"the file is larger than {limits.max_bytes} bytes")
    detected = sniff(data)
    if detected is None or detected not in limits.types:
        raise UploadRefused(UNSUPPORTED_TYPE)
    declared = normalise_type(content_type)
    if declared != detected:
        raise UploadRefused(TYPE_MISMATCH, "the declared type is not the type of the file's content")
    _CHECKS[detected](data)
    return CheckedFile(safe_filename(filename, detected), detected, bytes(data), hashlib.sha256(data).hexdigest())


def sniff(data: bytes) -> str | None:
    """The attachment type ``data`` starts like (its magic number), or ``None``. Says nothing of the rest."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return WEBP
    if re.match(rb"%PDF-[12]\.\d", data[:8]):
        return PDF
    return None


def servable_picture(content_type: str, data: bytes) -> bool:
    """Whether stored bytes may be served as a staff picture: a picture type (PNG, JPEG or WebP) that the bytes
    really start like. Both ports ask it before they send one (the chat port's ``/avatars/``, the console's own
    preview): nothing is served as an image that is not one, whatever the database holds."""
    return content_type in AVATAR_TYPES and sniff(data) == content_type


def _malformed(what: str) -> UploadRefused:
    return UploadRefused(MALFORMED, f"the file is damaged or incomplete ({what})")


def _check_dimensions(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise _malformed("no image size")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise UploadRefused(TOO_LARGE, f"the image is larger than {MAX_IMAGE_PIXELS} pixels")


def _check_png(data: bytes) -> None:
    """Every chunk fits and has its CRC; ``IHDR`` first, some ``IDAT``, ``IEND`` last, nothing after it (a file
    with something appended is how PNG/HTML or PNG/ZIP polyglots are made)."""
    pos, index, seen_data = 8, 0, False
    while True:
        if pos + 12 > len(data):
            raise _malformed("PNG ends inside a chunk")
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data) or not kind.isalpha():
            raise _malformed("PNG chunk")
        if zlib.crc32(data[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            raise _malformed("PNG chunk checksum")
        if index == 0:
            if kind != b"IHDR" or length != 13:
                raise _malformed("PNG header")
            _check_dimensions(int.from_bytes(data[pos + 8:pos + 12], "big"),
                              int.from_bytes(data[pos + 12:pos + 16], "big"))
        seen_data = seen_data or kind == b"IDAT"
        pos, index = end, index + 1
        if kind == b"IEND":
            break
    if not seen_data:
        raise _malformed("PNG without image data")
    if pos != len(data):
        raise _malformed("data after the PNG end")


_JPEG_FRAMES: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 (not DHT, JPG, DAC)


def _check_jpeg(data: bytes) -> None:
    """The marker segments up to the start of scan fit, one of them is a frame header with a size, and an end of
    image marker follows the scan. (Bytes after the end marker are allowed: phones append motion photos there;
    the file is served as ``image/jpeg`` with ``nosniff`` whatever follows.)"""
    pos, size = 2, None
    while True:
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise _malformed("JPEG segment")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            raise _malformed("JPEG ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            continue
        if marker in (0xD8, 0xD9):
            raise _malformed("JPEG marker out of place")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2 or pos + length > len(data):
            raise _malformed("JPEG segment length")
        if marker in _JPEG_FRAMES:
            if length < 8:
                raise _malformed("JPEG frame header")
            size = (int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 3:pos + 5], "big"))
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
    if size is None:
        raise _malformed("JPEG without a frame header")
    _check_dimensions(*size)
    if data.rfind(b"\xff\xd9") < pos:
        raise _malformed("JPEG without an end marker")


def _check_gif(data: bytes) -> None:
    """The logical screen has a size and the file ends with the GIF trailer."""
    if len(data) < 14:
        raise _malformed("GIF header")
    _check_dimensions(int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little"))
    if data[-1] != 0x3B:
        raise _malformed("GIF without its trailer")


def _check_webp(data: bytes) -> None:
    """The RIFF size is the file's, every chunk fits, and the first one is a VP8/VP8L/VP8X header with a size."""
    if len(data) < 30 or int.from_bytes(data[4:8], "little") + 8 != len(data):
        raise _malformed("WebP size")
    pos = 12
    while pos < len(data):
        if pos + 8 > len(data):
            raise _malformed("WebP chunk")
        length = int.from_bytes(data[pos + 4:pos + 8], "little")
        pos += 8 + length + (length & 1)
        if pos > len(data):
            raise _malformed("WebP chunk")
    kind = data[12:16]
    if kind == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif kind == b"VP8L":
        if data[20] != 0x2F:
            raise _malformed("WebP lossless header")
        bits = int.from_bytes(data[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _malformed("WebP lossy header")
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
    else:
        raise _malformed("WebP without an image header")
    _check_dimensions(width, height)


#: PDF names that run something, start a program, or carry other files (decoded from ``#xx`` escapes first).
PDF_ACTIVE_NAMES: Final = frozenset({
    b"JavaScript", b"JS", b"Launch", b"EmbeddedFile", b"EmbeddedFiles", b"RichMedia", b"ImportData", b"GoToE",
    b"SubmitForm",
})
_PDF_NAME = re.compile(rb"/([^\s/<>\[\](){}%]+)")
_PDF_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")


def _check_pdf(data: bytes) -> None:
    """An end-of-file marker in the last kilobyte (a truncated PDF has none) and no active content names."""
    if b"%%EOF" not in data[-1024:]:
        raise _malformed("PDF without its end-of-file marker")
    for match in _PDF_NAME.finditer(data):
        name = _PDF_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), match.group(1))
        if name in PDF_ACTIVE_NAMES:
            raise UploadRefused(ACTIVE_CONTENT)


_CHECKS: Final[Mapping[str, Callable[[bytes], None]]] = {
    PNG: _check_png, JPEG: _check_jpeg, GIF: _check_gif, WEBP: _check_webp, PDF: _check_pdf,
}


# ---------------------------------------------------------------------------------------------------- assembling
class UploadAssembler:
    """The bytes of one upload arriving in chunks (the chat protocol's binary frames), without I/O.

    ``size`` is the declared size (already checked by :func:`check_declared`); :meth:`add` takes a chunk and says
    whether the file is complete; more bytes than declared raise :data:`BAD_UPLOAD` (and the upload is over).
    """

    def __init__(self, upload_id: str, filename: str | None, content_type: str, size: int) -> None:
        self.upload_id = upload_id
        self.filename = filename
        self.content_type = content_type
        self.size = size
        self._chunks: list[bytes] = []
        self.received = 0

    def __repr__(self) -> str:  # never the name: it is the customer's
        return f"UploadAssembler(upload_id={self.upload_id!r}, received={self.received}, size={self.size})"

    def add(self, chunk: bytes) -> bool:
        """Append ``chunk``; ``True`` when all the declared bytes are there."""
        if not chunk:
            raise UploadRefused(BAD_UPLOAD, "an empty chunk")
        if self.received + len(chunk) > self.size:
            raise UploadRefused(BAD_UPLOAD, "more bytes than the declared size")
        self._chunks.append(bytes(chunk))
        self.received += len(chunk)
        return self.received == self.size

    def data(self) -> bytes:
        return b"".join(self._chunks)


# ------------------------------------------------------------------------------------------------------ serving
def content_disposition(filename: str, *, inline: bool) -> str:
    """``inline`` or ``attachment`` with the name twice: an ASCII fallback (``filename=``, quoted, anything else
    replaced) and the exact UTF-8 name (``filename*=``, RFC 6266 / 5987 percent-encoding)."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename) or "attachment"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def download_headers(content_type: str, filename: str, data: bytes) -> dict[str, str]:
    """The headers of a download of a stored attachment (besides ``Content-Length`` and the server's own).

    The stored type is checked again against the stored bytes: an image whose bytes are that image is sent
    ``inline`` with its type (the widget and the console show it in an ``<img>``); anything else, a PDF included,
    is ``attachment``, and a file whose bytes are not its stored type goes as ``application/octet-stream``. Never
    HTML, never sniffed (``nosniff``), never able to run anything (:data:`ATTACHMENT_CSP`)."""
    actual = sniff(data)
    if actual != content_type or content_type not in ATTACHMENT_TYPES:
        content_type = "application/octet-stream"
    return {
        "Content-Type": content_type,
        "Content-Disposition": content_disposition(filename, inline=content_type in IMAGE_TYPES),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": ATTACHMENT_CSP,
        "Cache-Control": "private, no-store",
        "Cross-Origin-Resource-Policy": "cross-origin",  # the widget shows it inside the shop's own page
    }


_TOKEN_PREFIX: Final = b"kefu.attachment-download\x00"


def download_token(secret_hash: str, attachment_id: str) -> str:
    """The customer's download token of one attachment: HMAC-SHA256 of its id keyed with the conversation's stored
    secret hash, base64url without padding (43 characters). Only the server (which holds the hash) makes one."""
    mac = hmac.new(secret_hash.encode("ascii"), _TOKEN_PREFIX + attachment_id.encode("ascii"), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def token_ok(secret_hash: str | None, attachment_id: str, token: str | None) -> bool:
    """Whether ``token`` is the download token of ``attachment_id`` (constant-time); never for a conversation
    without a secret hash."""
    if not secret_hash or not token or len(token) > 64:
        return False
    return hmac.compare_digest(download_token(secret_hash, attachment_id).encode(), token.encode("ascii", "replace"))


ATTACHMENT_ID_RE: Final = re.compile(r"[0-9a-f]{32}")


def download_path(attachment_id: str, token: str) -> str:
    """The chat port's path of a customer download (relative to the server's base URL)."""
    return f"attachments/{attachment_id}?token={token}"
