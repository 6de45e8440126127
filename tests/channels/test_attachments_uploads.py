"""The pure side of attachments (:mod:`channels.uploads`, the upload frames, the transcript's attachments): which
files pass, which are refused and why, safe names, download headers and tokens. Real files come from Pillow's
encoders, so the structural checks are tested against what real tools write, not against hand-made bytes only."""

from __future__ import annotations

import datetime as dt
import io
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import uploads as up
from channels.frames import UploadStart, attachment_json, parse_client_frame
from channels.transcript import history_frame, push_frames, transcript
from dialogue.store.attachments import ATTACHMENT_TYPES as STORE_TYPES
from dialogue.types import Event

LIMITS = up.UploadLimits()


# ------------------------------------------------------------------------------------------------------ samples
def image(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB", **options: Any) -> bytes:
    """A small real image written by Pillow (``fmt``: PNG, JPEG, GIF, WEBP)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 30, 128)[: len(mode)]).save(out, fmt, **options)
    return out.getvalue()


def pdf(extra: bytes = b"") -> bytes:
    """A minimal real PDF (Pillow's writer), optionally with ``extra`` object text before the trailer."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 10, 10)).save(out, "PDF")
    data = out.getvalue()
    if extra:
        head, _, tail = data.rpartition(b"xref")
        data = head + extra + b"\nxref" + tail
    return data


PNG = image("PNG")
JPEG = image("JPEG")
GIF = image("GIF")
WEBP = image("WEBP")
PDF = pdf()
SAMPLES = {"image/png": PNG, "image/jpeg": JPEG, "image/gif": GIF, "image/webp": WEBP, "application/pdf": PDF}


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_size(width: int, height: int) -> bytes:
    """A structurally valid PNG header claiming ``width`` x ``height`` (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def refused(data: bytes, declared: str | None, name: str | None = "file", limits: up.UploadLimits = LIMITS) -> str:
    with pytest.raises(up.UploadRefused) as caught:
        up.check_upload(data, declared, name, limits)
    return caught.value.code


# ----------------------------------------------------------------------------------------------- accepted files
@pytest.mark.parametrize("content_type", sorted(SAMPLES))
def test_every_allowed_type_written_by_a_real_encoder_passes(content_type: str) -> None:
    data = SAMPLES[content_type]
    checked = up.check_upload(data, content_type, "shot" + up.ATTACHMENT_TYPES[content_type][0], LIMITS)
    assert checked.content_type == content_type and checked.data == data and checked.size == len(data)
    assert checked.filename == "shot" + up.ATTACHMENT_TYPES[content_type][0]
    assert checked.image == (content_type != "application/pdf")
    assert len(checked.sha256) == 64 and "shot" not in repr(checked) and str(data[:8]) not in repr(checked)


@pytest.mark.parametrize(("fmt", "options", "mode"), [
    ("JPEG", {"progressive": True}, "RGB"), ("JPEG", {"quality": 20}, "L"), ("WEBP", {"lossless": True}, "RGB"),
    ("WEBP", {}, "RGBA"), ("PNG", {"optimize": True}, "RGBA"), ("GIF", {"interlace": False}, "P"),
])
def test_variants_of_each_format_pass(fmt: str, options: dict[str, Any], mode: str) -> None:
    data = image(fmt, (64, 48), mode, **options)
    detected = up.sniff(data)
    assert detected is not None
    assert up.check_upload(data, detected, "x", LIMITS).content_type == detected


def test_declared_type_aliases_and_parameters_are_understood() -> None:
    assert up.check_upload(JPEG, "image/jpg", "a.jpg", LIMITS).content_type == "image/jpeg"
    assert up.check_upload(PNG, "IMAGE/PNG; charset=binary", "a.png", LIMITS).content_type == "image/png"
    assert up.check_upload(PDF, "application/x-pdf", "a.pdf", LIMITS).content_type == "application/pdf"


def test_the_channel_and_the_store_allow_the_same_types() -> None:
    assert set(up.ATTACHMENT_TYPES) == set(STORE_TYPES)
    assert up.IMAGE_TYPES == {t for t in up.ATTACHMENT_TYPES if t.startswith("image/")}


# ---------------------------------------------------------------------------------------------- refused files
def test_oversized_files_are_refused_before_and_after_their_bytes() -> None:
    small = up.UploadLimits(max_bytes=1000)
    with pytest.raises(up.UploadRefused) as before:
        up.check_declared("big.png", "image/png", 1001, small)
    assert before.value.code == up.TOO_LARGE and "1000" in before.value.reason
    assert up.check_declared("ok.png", "image/png", 1000, small) == "image/png"
    assert refused(image("PNG", (400, 400), optimize=False) + b"", "image/png", limits=up.UploadLimits(
        max_bytes=100)) == up.TOO_LARGE
    assert refused(png_with_size(10_000, 10_000), "image/png") == up.TOO_LARGE  # 100 Mpx in a few bytes
    assert refused(png_with_size(30_000, 1), "image/png") == up.TOO_LARGE
    assert up.check_upload(png_with_size(5000, 5000), "image/png", "ok", LIMITS).size < 200


@pytest.mark.parametrize(("data", "declared"), [
    (b"<!doctype html><script>alert(1)</script>", "text/html"),
    (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "image/svg+xml"),
    (b"PK\x03\x04" + b"\x00" * 40, "application/zip"),
    (b"MZ\x90\x00" + b"\x00" * 60, "application/octet-stream"),
    (b"just some text", "text/plain"),
    (b"<!doctype html><p>hi</p>", "image/png"),  # HTML named as a PNG: not a PNG at all
    (b"BM" + b"\x00" * 60, "image/bmp"),
])
def test_anything_but_the_five_types_is_unsupported(data: bytes, declared: str) -> None:
    assert refused(data, declared) == up.UNSUPPORTED_TYPE


@pytest.mark.parametrize("declared", ["text/html", "image/svg+xml", "application/xhtml+xml", "", None, "image/*"])
def test_a_declared_type_outside_the_list_is_refused_before_any_byte(declared: str | None) -> None:
    with pytest.raises(up.UploadRefused) as caught:
        up.check_declared("x.png", declared, 10, LIMITS)
    assert caught.value.code == up.UNSUPPORTED_TYPE


def test_a_type_left_out_by_the_limits_is_unsupported() -> None:
    images_only = up.UploadLimits(types=frozenset(up.IMAGE_TYPES))
    assert refused(PDF, "application/pdf", limits=images_only) == up.UNSUPPORTED_TYPE


@pytest.mark.parametrize(("data", "declared"), [
    (PNG, "image/jpeg"), (JPEG, "image/png"), (PDF, "image/png"), (GIF, "image/webp"), (WEBP, "application/pdf"),
    (PNG, None),
])
def test_the_declared_type_must_be_the_content_type(data: bytes, declared: str | None) -> None:
    assert refused(data, declared) == up.TYPE_MISMATCH


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@pytest.mark.parametrize(("name", "data", "declared"), [
    ("png truncated", PNG[:-7], "image/png"),
    ("png half", PNG[: len(PNG) // 2], "image/png"),
    ("png bad crc", _flip(PNG, 40), "image/png"),
    ("png html appended", PNG + b"<script>alert(1)</script>", "image/png"),
    ("png no IHDR", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IEND", b""), "image/png"),
    ("png no IDAT", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
     + png_chunk(b"IEND", b""), "image/png"),
    ("png zero size", png_with_size(0, 10), "image/png"),
    ("png signature only", b"\x89PNG\r\n\x1a\n", "image/png"),
    ("jpeg truncated", JPEG[:-2], "image/jpeg"),
    ("jpeg header only", JPEG[:200], "image/jpeg"),
    ("jpeg signature only", b"\xff\xd8\xff", "image/jpeg"),
    ("jpeg no frame", b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda\x00\x02\xff\xd9", "image/jpeg"),
    ("gif truncated", GIF[:-1], "image/gif"),
    ("gif header only", b"GIF89a\x01\x00", "image/gif"),
    ("gif zero size", b"GIF89a\x00\x00\x00\x00" + GIF[10:], "image/gif"),
    ("webp truncated", WEBP[:-4], "image/webp"),
    ("webp grown", WEBP + b"\x00\x00", "image/webp"),
    ("webp bad header", WEBP[:12] + b"XXXX" + WEBP[16:], "image/webp"),
    ("pdf truncated", PDF[:-40], "application/pdf"),
    ("pdf header only", b"%PDF-1.7\n", "application/pdf"),
])
def test_truncated_and_malformed_files_are_refused(name: str, data: bytes, declared: str) -> None:
    assert refused(data, declared) == up.MALFORMED, name


@pytest.mark.parametrize("extra", [
    b"9 0 obj << /Type /Action /S /JavaScript /JS (app.alert(1)) >> endobj",
    b"9 0 obj << /S /J#61va#53cript /JS (x) >> endobj",  # the same name written with #xx escapes
    b"9 0 obj << /S /Launch /F (calc.exe) >> endobj",
    b"9 0 obj << /Type /EmbeddedFile /Length 3 >> stream\nabc\nendstream endobj",
    b"9 0 obj << /OpenAction << /S /JS /JS (x) >> >> endobj",
])
def test_pdfs_with_active_content_are_refused(extra: bytes) -> None:
    assert refused(pdf(extra), "application/pdf") == up.ACTIVE_CONTENT


def test_a_plain_pdf_with_links_and_text_passes() -> None:
    data = pdf(b"9 0 obj << /Type /Annot /Subtype /Link /A << /S /URI /URI (https://shop.example) >> >> endobj")
    assert up.check_upload(data, "application/pdf", "invoice.pdf", LIMITS).filename == "invoice.pdf"


def test_empty_files_are_refused() -> None:
    assert refused(b"", "image/png") == up.EMPTY
    with pytest.raises(up.UploadRefused) as caught:
        up.check_declared("a.png", "image/png", 0, LIMITS)
    assert caught.value.code == up.EMPTY


@pytest.mark.parametrize("size", [-1, True, 1.5, "10"])
def test_a_bad_declared_size_is_a_bad_upload(size: Any) -> None:
    with pytest.raises(up.UploadRefused) as caught:
        up.check_declared("a.png", "image/png", size, LIMITS)
    assert caught.value.code == up.BAD_UPLOAD


def test_refusals_carry_no_file_name_or_content() -> None:
    with pytest.raises(up.UploadRefused) as caught:
        up.check_upload(b"<script>secret-name</script>", "image/png", "secret-name.png", LIMITS)
    assert "secret" not in str(caught.value) and "secret" not in repr(caught.value)
    assert set(up.REFUSAL_MESSAGES) == {up.TOO_LARGE, up.EMPTY, up.UNSUPPORTED_TYPE, up.TYPE_MISMATCH, up.MALFORMED,
                                         up.ACTIVE_CONTENT, up.BAD_UPLOAD}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([*up.ATTACHMENT_TYPES, "text/html", ""]))
def test_any_bytes_are_accepted_or_refused_never_crash(data: bytes, declared: str) -> None:
    try:
        checked = up.check_upload(data, declared, "x", LIMITS)
    except up.UploadRefused as exc:
        assert exc.code in up.REFUSAL_MESSAGES
    else:
        assert checked.content_type == declared


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SAMPLES)), st.integers(min_value=0), st.binary(min_size=1, max_size=8))
def test_damaged_real_files_never_crash_the_checks(content_type: str, where: int, junk: bytes) -> None:
    data = SAMPLES[content_type]
    at = where % len(data)
    damaged = data[:at] + junk + data[at + len(junk):]
    try:
        up.check_upload(damaged, content_type, "x", LIMITS)
    except up.UploadRefused as exc:
        assert exc.code in up.REFUSAL_MESSAGES


# ------------------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize(("name", "content_type", "expected"), [
    ("../../etc/passwd", "image/png", "passwd.png"),
    ("C:\\Users\\amy\\Desktop\\shot.PNG", "image/png", "shot.png"),
    ("<img src=x onerror=alert(1)>.png", "image/png", "_img src=x onerror=alert(1)_.png"),
    ("invoice\u202egpj.exe", "application/pdf", "invoicegpj.exe.pdf"),  # no right-to-left override trick
    ("a\x00b\r\nc\td.jpg", "image/jpeg", "ab c d.jpg"),
    ("report.html", "application/pdf", "report.html.pdf"),
    ("photo.jpeg", "image/jpeg", "photo.jpeg"),
    ("截图 2024.png", "image/png", "截图 2024.png"),
    ("...", "image/gif", "attachment.gif"),
    ("", "image/webp", "attachment.webp"),
    (None, "application/pdf", "attachment.pdf"),
    (".htaccess", "image/png", "htaccess.png"),
    ('quote" ; name=evil.pdf', "application/pdf", "quote_ _ name=evil.pdf"),
])
def test_file_names_are_made_safe(name: str | None, content_type: str, expected: str) -> None:
    assert up.safe_filename(name, content_type) == expected


def test_long_names_are_cut_keeping_the_extension() -> None:
    name = up.safe_filename("x" * 500 + ".pdf", "application/pdf")
    assert len(name) == up.MAX_FILENAME_CHARS and name.endswith(".pdf")
    with pytest.raises(up.UploadRefused) as caught:
        up.check_declared("y" * (up.MAX_DECLARED_NAME_CHARS + 1), "image/png", 10, LIMITS)
    assert caught.value.code == up.BAD_UPLOAD


# ----------------------------------------------------------------------------------------------------- serving
def test_content_disposition_has_an_ascii_fallback_and_the_exact_utf8_name() -> None:
    value = up.content_disposition('发票 "3".pdf', inline=False)
    assert value == "attachment; filename=\"__ _3_.pdf\"; filename*=UTF-8''%E5%8F%91%E7%A5%A8%20%223%22.pdf"
    assert up.content_disposition("a.png", inline=True).startswith('inline; filename="a.png"')
    assert "\r" not in up.content_disposition("a\r\nSet-Cookie: x=1.png", inline=True)


def test_download_headers_inline_only_for_verified_images() -> None:
    image_headers = up.download_headers("image/png", "a.png", PNG)
    assert image_headers["Content-Type"] == "image/png"
    assert image_headers["Content-Disposition"].startswith("inline;")
    assert image_headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in image_headers["Content-Security-Policy"]
    assert "default-src 'none'" in image_headers["Content-Security-Policy"]
    pdf_headers = up.download_headers("application/pdf", "a.pdf", PDF)
    assert pdf_headers["Content-Type"] == "application/pdf"
    assert pdf_headers["Content-Disposition"].startswith("attachment;")
    # A stored row whose bytes are not its type (a corrupted or tampered row): neither inline nor its claimed type.
    for stored_type, data in (("image/png", b"<html><script>alert(1)</script>"), ("image/png", JPEG),
                              ("text/html", b"<html>")):
        headers = up.download_headers(stored_type, "a.png", data)
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["Content-Disposition"].startswith("attachment;")


def test_download_tokens_open_one_attachment_of_one_conversation() -> None:
    a, b = "a" * 64, "b" * 64
    token = up.download_token(a, "0" * 32)
    assert len(token) == 43 and token == up.download_token(a, "0" * 32)
    assert up.token_ok(a, "0" * 32, token)
    assert not up.token_ok(b, "0" * 32, token)  # another conversation's
    assert not up.token_ok(a, "1" * 32, token)  # another attachment
    assert not up.token_ok(None, "0" * 32, token) and not up.token_ok(a, "0" * 32, None)
    assert not up.token_ok(a, "0" * 32, token[:-1]) and not up.token_ok(a, "0" * 32, "é" * 43)
    assert up.download_path("0" * 32, token) == f"attachments/{'0' * 32}?token={token}"


# ------------------------------------------------------------------------------------------------- assembling
def test_the_assembler_takes_exactly_the_declared_bytes() -> None:
    assembler = up.UploadAssembler("u1", "secret name.png", "image/png", len(PNG))
    assert not assembler.add(PNG[:50]) and assembler.received == 50
    assert assembler.add(PNG[50:]) and assembler.data() == PNG
    assert "secret" not in repr(assembler)
    with pytest.raises(up.UploadRefused) as caught:
        assembler.add(b"x")
    assert caught.value.code == up.BAD_UPLOAD
    with pytest.raises(up.UploadRefused):
        up.UploadAssembler("u2", None, "image/png", 10).add(b"")


@pytest.mark.parametrize("bad", [
    {"max_bytes": 0}, {"types": frozenset()}, {"types": frozenset({"text/html"})},
    {"max_pending_bytes": 10, "max_bytes": 20}, {"timeout": 0}, {"rate": 0}, {"burst": 0},
])
def test_upload_limits_refuse_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        up.UploadLimits(**bad)


# ------------------------------------------------------------------------------------------- frames, transcript
def test_the_upload_frame_is_parsed_and_checked_for_shape() -> None:
    frame = parse_client_frame('{"type": "upload", "upload_id": "u-1", "filename": "a.png", '
                               '"content_type": "image/png", "size": 12}')
    assert frame == UploadStart("u-1", "a.png", "image/png", 12)
    assert "a.png" not in repr(frame)
    for bad in ('{"type": "upload", "filename": "a", "content_type": "image/png", "size": 1}',
                '{"type": "upload", "upload_id": "x y", "content_type": "image/png", "size": 1}',
                '{"type": "upload", "upload_id": "u", "content_type": 5, "size": 1}',
                '{"type": "upload", "upload_id": "u", "content_type": "image/png", "size": -1}',
                '{"type": "upload", "upload_id": "u", "content_type": "image/png", "size": true}',
                '{"type": "upload", "upload_id": "u", "filename": 3, "content_type": "image/png", "size": 1}',
                '{"type": "upload", "upload_id": "u", "content_type": "' + "x" * 101 + '", "size": 1}'):
        with pytest.raises(Exception) as caught:
            parse_client_frame(bad)
        assert getattr(caught.value, "code", None) == "bad_frame", bad


def _event(seq: int, type_: str, data: dict[str, Any], message_id: str | None = None) -> Event:
    return Event("c1", seq, 1, type_, data, dt.datetime.now(dt.UTC), message_id)


ATTACHED = {"id": "f" * 32, "filename": "shot.png", "content_type": "image/png", "size": 99, "direction": "customer"}
SENT = {"id": "e" * 32, "filename": "label.pdf", "content_type": "application/pdf", "size": 2048,
        "direction": "agent", "agent": "amy.lee"}


def test_history_shows_attachments_of_both_sides_with_links() -> None:
    events = [_event(1, "user_message", {"text": "hi"}, "m1"), _event(2, "attachment", ATTACHED, "up-1"),
              _event(3, "attachment", SENT, "agent-file-1")]
    entries = transcript(events, attachment_url=lambda aid: f"attachments/{aid}?token=t")
    assert entries[1] == {
        "role": "user", "text": "shot.png", "message_id": "up-1", "reply_to": None,
        "attachment": {"id": "f" * 32, "filename": "shot.png", "content_type": "image/png", "size": 99,
                       "image": True, "url": f"attachments/{'f' * 32}?token=t"},
    }
    assert entries[2]["role"] == "agent" and entries[2]["agent"] == {"name": "amy.lee", "avatar": "AL"}
    assert entries[2]["attachment"]["image"] is False
    assert "url" not in transcript(events)[1]["attachment"]  # no link maker: no link
    assert history_frame("c1", events)["messages"][1]["text"] == "shot.png"


def test_only_agent_attachments_are_pushed() -> None:
    events = [_event(5, "attachment", ATTACHED, "up-1"), _event(6, "attachment", SENT, "agent-file-1")]
    frames, last = push_frames(events, 4, attachment_url=lambda aid: "u/" + aid)
    assert last == 6 and len(frames) == 1
    assert frames[0] == {
        "type": "attachment", "role": "agent", "conversation_id": "c1", "message_id": "agent-file-1",
        "attachment": attachment_json(SENT, "u/" + "e" * 32), "agent": {"name": "amy.lee", "avatar": "AL"},
    }
