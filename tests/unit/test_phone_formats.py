"""Mail as phones and office programs send it: content sniffing, HEIC/AVIF types, the
decoration rule (signature logos, icons, tracking pixels), the reply's display name and
skipped line, and the server's honest log line. No network, no model."""

from __future__ import annotations

import email.policy
import io
from email.message import EmailMessage

import pytest
from PIL import Image, ImageDraw

from animalid.errors import BadImageError
from animalid.mail.decorations import DECORATION_MAX_PIXELS, ICON_MAX_SIDE, find_decorations, image_size, is_decoration
from animalid.mail.imagetypes import image_type_of, sniff_image_type
from animalid.mail.messages import Limits, build_reply, parse_incoming, parse_reply, skipped_text
from animalid.recognition.images import load_image
from animalid.server.answering import outcome

SERVER = "server@hub.test"
SENDER = "client1@hub.test"
LIMITS = Limits(max_message_bytes=20_000_000, max_parts=50, max_images=10)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo_like(size: tuple[int, int]) -> Image.Image:
    """Smooth gradients and noise: compresses like a photo, not like a flat logo."""
    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 40)
    return Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def logo(size: tuple[int, int]) -> Image.Image:
    """A signature logo as Outlook stores one: a mark and a name on white."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    side = min(size)
    draw.ellipse((2, 2, side - 2, side - 2), fill=(0, 90, 180))
    draw.text((side + 6, side // 3), "ACME Corporation", fill=(40, 40, 40))
    return image


@pytest.fixture(scope="module")
def phone_jpeg() -> bytes:
    return encode(photo_like((1632, 1224)), "JPEG", quality=85)  # iOS Mail "Large"


@pytest.fixture(scope="module")
def decorations() -> dict[str, bytes]:
    pixel = io.BytesIO()
    Image.new("P", (1, 1)).save(pixel, "GIF", transparency=0)
    return {"tracking.gif": pixel.getvalue(),
            "image002.png": encode(logo((32, 32)), "PNG"),
            "image001.png": encode(logo((240, 80)), "PNG"),
            "logo-retina.png": encode(logo((600, 200)), "PNG")}


# -- what the bytes say -------------------------------------------------------------------

def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00" * 16


@pytest.mark.parametrize("data, expected", [
    (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "image/png"),
    (b"GIF89a" + b"\x00" * 20, "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 20, "image/webp"),
    (b"BM" + b"\x00" * 12 + (40).to_bytes(4, "little") + b"\x00" * 20, "image/bmp"),
    (b"II*\x00" + b"\x00" * 20, "image/tiff"),
    (ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
    (ftyp(b"mif1", b"heic"), "image/heic"),  # HEIC under the generic major brand
    (ftyp(b"avif", b"avif", b"mif1"), "image/avif"),
    (ftyp(b"mif1", b"miaf"), "image/heif"),
    (ftyp(b"isom", b"mp41"), None),  # an MP4 video is not a photo
    (ftyp(b"qt  "), None),  # nor an iPhone "live photo" movie
    (b"BMW 320d, a car, not a bitmap" + b"\x00" * 10, None),
    (b"%PDF-1.4 not a picture", None),
    (b"", None),
])
def test_images_are_known_by_their_bytes(data, expected):
    assert sniff_image_type(data) == expected


def test_the_name_decides_only_when_the_bytes_cannot():
    assert image_type_of(b"????", "IMG_1234.HEIC") == "image/heic"
    assert image_type_of(b"????", "photo.avif") == "image/avif"
    assert image_type_of(b"\xff\xd8\xff\xe0....", "photo.heic") == "image/jpeg"
    assert image_type_of(b"????", "notes.txt") == "application/octet-stream"


def test_real_heif_and_avif_headers_give_their_size():
    avif = encode(photo_like((320, 200)), "AVIF")
    assert sniff_image_type(avif) == "image/avif"
    assert image_size(avif) == (320, 200)  # from its 'ispe' box
    decoded = load_image(avif)
    assert decoded.mode == "RGB" and decoded.size == (320, 200)


def test_an_unusable_image_tells_the_person_what_to_do():
    with pytest.raises(BadImageError, match=r"^unsupported image format ICO: send the photo as JPEG$"):
        load_image(encode(Image.new("RGB", (16, 16)), "ICO"))
    with pytest.raises(BadImageError, match=r"not an image.*: send the photo as JPEG$"):
        load_image(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40)


# -- what people's mail looks like ----------------------------------------------------------

def wire(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


def mail(subject: str = "look") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"] = SENDER, SERVER
    message["Subject"], message["Message-ID"] = subject, "<m1@phone.example>"
    return message


def test_a_nameless_octet_stream_jpeg_is_a_photo(phone_jpeg):
    message = mail()
    message.set_content("see attached")
    # Old phones and some webmail: no type worth the name and no file name.
    message.add_attachment(phone_jpeg, maintype="application", subtype="octet-stream")
    message.add_attachment(b"PK\x03\x04 a zip file", maintype="application", subtype="octet-stream")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    parsed = parse_incoming(wire(message), [SERVER], LIMITS)
    assert [(i.name, i.content_type, i.data) for i in parsed.images] == [
        ("image-1.jpg", "image/jpeg", phone_jpeg)]
    assert parsed.skipped == [] and parsed.problems == []


def test_a_part_declared_as_one_image_type_is_read_as_the_bytes_say(phone_jpeg):
    message = mail()
    message.set_content("x")
    message.add_attachment(phone_jpeg, maintype="image", subtype="heic", filename="IMG_0001.HEIC")
    (image,) = parse_incoming(wire(message), [SERVER], LIMITS).images
    assert (image.name, image.content_type) == ("IMG_0001.HEIC", "image/jpeg")


def outlook_mail(photo: bytes | None, logos: dict[str, bytes]) -> EmailMessage:
    """An Outlook / corporate mail: HTML body with the signature images inline
    (multipart/related, Content-ID), then the photo as an attachment."""
    message = mail("Fwd: what is this?")
    message.set_content("Hello, what animal is this?\n\n--\nAnn Smith | ACME Corporation\n")
    cids = "".join(f'<img src="cid:{name}@01DA0000.00000000">' for name in logos)
    message.add_alternative(f"<p>Hello, what animal is this?</p><p>--<br>{cids}</p>", subtype="html")
    html = message.get_payload()[1]
    for name, data in logos.items():
        html.add_related(data, maintype="image", subtype=image_type_of(data).partition("/")[2],
                         cid=f"<{name}@01DA0000.00000000>", filename=name, disposition="inline")
    if photo is not None:
        message.add_attachment(photo, maintype="image", subtype="jpeg", filename="IMG_20240501_101500.jpg")
    return message


def test_signature_images_beside_a_photo_are_skipped_and_named_in_one_line(phone_jpeg, decorations):
    parsed = parse_incoming(wire(outlook_mail(phone_jpeg, decorations)), [SERVER], LIMITS)
    assert [image.name for image in parsed.images] == ["IMG_20240501_101500.jpg"]
    assert parsed.skipped == ["tracking.gif (1x1)", "image002.png (32x32)", "image001.png (240x80)",
                              "logo-retina.png (600x200)"]
    answer = {"file": "IMG_20240501_101500.jpg", "common_name": "tiger", "scientific_name": "Panthera tigris",
              "rank": "species", "probability": 91.0, "taxonomy": {"family": "Felidae"}}
    reply = build_reply(parsed, SERVER, [answer], display_name="Animal ID")
    assert reply["From"] == "Animal ID <server@hub.test>"
    read = parse_reply(wire(reply))
    assert read.answers == [answer]  # the logos are not answered as photos
    lines = read.text.strip().splitlines()
    assert lines[0].startswith("IMG_20240501_101500.jpg: Tiger")  # the photo's answer comes first
    assert lines[-3].startswith("Not answered: 4 small images that look like a signature logo or icon")
    assert lines[-1].startswith("answers.json (attached) holds the same answers")
    assert "image001.png (240x80)" in lines[-3]


def test_a_mail_whose_only_images_are_small_is_answered(decorations):
    alone = {"image001.png": decorations["image001.png"]}
    parsed = parse_incoming(wire(outlook_mail(None, alone)), [SERVER], LIMITS)
    assert [image.name for image in parsed.images] == ["image001.png"] and not parsed.skipped
    icons = {"image002.png": decorations["image002.png"], "image003.png": decorations["tracking.gif"]}
    parsed = parse_incoming(wire(outlook_mail(None, icons)), [SERVER], LIMITS)
    assert [image.name for image in parsed.images] == ["image002.png", "image003.png"]  # no photo: all
    assert parsed.skipped == []
    # The logo is the largest image there: it is answered, the icon beside it is not.
    parsed = parse_incoming(wire(outlook_mail(None, {**alone, **icons})), [SERVER], LIMITS)
    assert [image.name for image in parsed.images] == ["image001.png"]
    assert parsed.skipped == ["image002.png (32x32)", "image003.png (1x1)"]


def test_attached_files_are_never_decorations(phone_jpeg, decorations):
    message = mail()
    message.set_content("two pictures")
    message.add_attachment(phone_jpeg, maintype="image", subtype="jpeg", filename="big.jpg")
    message.add_attachment(decorations["image001.png"], maintype="image", subtype="png", filename="small.png")
    parsed = parse_incoming(wire(message), [SERVER], LIMITS)
    assert [image.name for image in parsed.images] == ["big.jpg", "small.png"] and not parsed.skipped


def test_decorations_do_not_count_against_the_image_limit(phone_jpeg, decorations):
    icons = {f"icon{n}.png": decorations["image002.png"] for n in range(12)}
    parsed = parse_incoming(wire(outlook_mail(phone_jpeg, icons)), [SERVER], Limits(20_000_000, 50, 2))
    assert [(image.name, image.refusal) for image in parsed.images] == [("IMG_20240501_101500.jpg", None)]
    assert len(parsed.skipped) == 12
    line = skipped_text(parsed.skipped)
    assert line.count("icon") == 5 + 1 and line.endswith("and 7 more. Mail such an image alone to have "
                                                         "it identified.")


# -- the rule and its thresholds ----------------------------------------------------------------

def test_the_rule_on_its_edges():
    two_megapixels = 1632 * 1224
    assert is_decoration((ICON_MAX_SIDE, ICON_MAX_SIDE), 500, 0)  # an icon, whatever else there is
    assert not is_decoration((ICON_MAX_SIDE + 1, 30), 500, 0)  # small, but nothing larger beside it
    assert is_decoration((240, 80), 3_000, two_megapixels)
    assert is_decoration((600, 200), 4_000, 600 * 200 * 8)  # exactly 1/8 of the photo
    assert not is_decoration((600, 200), 4_000, 600 * 200 * 8 - 1)
    assert not is_decoration((400, 320), 4_000, two_megapixels)  # above DECORATION_MAX_PIXELS
    assert 400 * 320 > DECORATION_MAX_PIXELS
    assert not is_decoration((300, 300), 150_000, two_megapixels)  # a detailed image: bytes say photo


def test_an_image_over_the_pixel_limit_is_no_reference_and_unknown_sizes_are_kept(decorations):
    bomb = Image.new("1", (9000, 9000))  # 81 million pixels, over a 40-million limit
    images = [encode(bomb, "PNG"), decorations["image001.png"], b"\xff\xd8\xff garbage"]
    assert find_decorations(images, max_pixels=40_000_000) == {}
    assert find_decorations(images, max_pixels=100_000_000) == {1: (240, 80)}


# -- the server's log line ------------------------------------------------------------------------

def test_the_log_line_says_what_the_answer_holds():
    good, bad = {"file": "a.jpg", "rank": "family"}, {"file": "b.heic", "error": "damaged"}
    assert outcome([good, good], [], 0.4) == ("answered", "2 images, 0.40 s")
    assert outcome([good], ["image001.png (240x80)"], 0.4) == ("answered", "1 image, 1 decoration skipped, 0.40 s")
    assert outcome([good, bad], [], 0.4) == ("answered with errors", "1 of 2 images failed, 0.40 s")
    assert outcome([bad], [], 0.4) == ("answered with errors", "1 of 1 image failed, 0.40 s")
    assert outcome([{"file": "(message)", "error": "no image found in the message"}], [], 0.02) == \
        ("answered with errors", "no image: no image found in the message, 0.02 s")


def test_the_display_name_is_optional_and_quoted_when_needed():
    parsed = parse_incoming(wire(outlook_mail(b"\xff\xd8\xff", {})), [SERVER], LIMITS)
    assert build_reply(parsed, SERVER, [])["From"] == SERVER
    assert build_reply(parsed, SERVER, [], display_name="Animal ID, Zoo")["From"] == \
        '"Animal ID, Zoo" <server@hub.test>'
