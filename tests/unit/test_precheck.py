"""PC 1 checks a photo before mailing it, and every refusal says what to send instead."""

from __future__ import annotations

import email
import io
from email.message import EmailMessage

import pytest
from PIL import Image

from animalid.client.files import read_images
from animalid.client.precheck import check_photo
from animalid.errors import AnimalIdError, BadImageError
from animalid.mail.filekinds import (
    kind_of,
    no_image_text,
    not_a_photo_text,
    other_attachments,
)
from animalid.photolimits import long_side_within, size_problem


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, "PNG")
    return out.getvalue()


def test_a_text_file_named_jpg_is_refused_before_mailing(tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello, this is not a photo\n")
    with pytest.raises(AnimalIdError) as caught:
        read_images([str(fake)])
    assert str(caught.value) == (f"{fake} is a text file, not a JPEG image; "
                                 "send the photo itself (JPEG, PNG, HEIC...)")


def test_a_huge_png_is_refused_from_its_header_with_the_long_side_to_send(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png(12000, 12000, "1"))  # 1-bit: a small file, 144 million pixels
    with pytest.raises(BadImageError) as caught:
        read_images([str(huge)])
    assert str(caught.value) == (f"{huge}: too many pixels: 12000x12000 (limit 40,000,000): "
                                 "send it at most about 6000 px on the long side")


def test_a_1x1_image_is_too_small_to_judge():
    with pytest.raises(BadImageError, match=r"^one.png: too small to judge: 1x1 pixels; send a photo "
                                            r"at least 32 px on each side"):
        check_photo("one.png", png(1, 1))


def test_a_pdf_is_named_as_a_pdf(tmp_path):
    pdf = tmp_path / "cat.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n")
    with pytest.raises(AnimalIdError, match=r"cat.pdf is a PDF document; send the photo itself"):
        read_images([str(pdf)])


def test_a_truncated_jpeg_is_called_damaged():
    with pytest.raises(BadImageError, match=r"^x.jpg: damaged: it starts like a JPEG image"):
        check_photo("x.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 10)


@pytest.mark.parametrize("size", [(32, 32), (640, 480), (6000, 6000)])
def test_usable_photos_pass(size):
    check_photo("ok.png", png(*size, "1"))


def test_heic_is_left_to_the_server():
    check_photo("a.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")


def test_the_committed_photos_pass(photos):
    assert [name for name, _ in read_images([str(p) for p in sorted(photos.glob("*.png"))])]


@pytest.mark.parametrize("width, height, limit, side", [
    (12000, 12000, 40_000_000, 6000), (16000, 12000, 40_000_000, 7000),
    (30000, 1000, 20_000_000, 24000), (2000, 2000, 1_000_000, 1000), (900, 900, 500_000, 700)])
def test_the_long_side_advice_keeps_the_shape_within_the_limit(width, height, limit, side):
    assert long_side_within(width, height, limit) == side
    assert side * side * min(width, height) / max(width, height) <= limit


def test_size_problem_is_none_for_a_normal_photo():
    assert size_problem(4032, 3024) is None


@pytest.mark.parametrize("name, data, declared, kind", [
    ("cat.pdf", b"%PDF-1.7", "application/pdf", "a PDF document"),
    ("notes.docx", b"PK\x03\x04rest", "application/octet-stream", "a Word document"),
    ("a.zip", b"PK\x03\x04rest", "application/zip", "a ZIP archive"),
    ("clip.mov", b"\x00\x00\x00\x14ftypqt  \x00\x00", "video/quicktime", "a video (MP4/QuickTime)"),
    ("page.html", b"<!DOCTYPE html><html>", "text/html", "a web page (HTML)"),
    ("fake.jpg", b"just words", "image/jpeg", "a text file"),
    ("logo.svg", b"<?xml version='1.0'?><svg xmlns=''/>", "image/svg+xml", "a vector drawing (SVG), not a photo"),
    ("blob", bytes(range(256)), "application/octet-stream", "not an image"),
    ("empty.jpg", b"", "image/jpeg", "empty"),
])
def test_kind_of_reads_the_content_first(name, data, declared, kind):
    assert kind_of(data, name, declared) == kind


def test_the_refusal_sentence():
    assert not_a_photo_text("cat.pdf", b"%PDF-1.4") == \
        "cat.pdf is a PDF document; attach the photo itself (JPEG, PNG, HEIC...)"
    assert not_a_photo_text("x.png", bytes(range(256))) == \
        "x.png is not a PNG image, whatever its name says; attach the photo itself (JPEG, PNG, HEIC...)"


def test_a_mailed_pdf_is_named_in_the_no_image_text():
    message = EmailMessage()
    message["From"] = "a@example.org"
    message.set_content("here is my cat")
    message.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="cat.pdf")
    parsed = email.message_from_bytes(message.as_bytes())
    assert no_image_text(other_attachments(parsed)) == \
        "no image found: cat.pdf is a PDF document; attach the photo itself (JPEG, PNG, HEIC...)"


def test_a_message_with_only_text_says_to_attach_the_photo():
    message = EmailMessage()
    message.set_content("no photo, sorry")
    assert no_image_text(other_attachments(message)) == \
        "no image found in the message; attach the photo itself (JPEG, PNG, HEIC...)"
