"""Capture like a camera app: the webcam front end of client.py.

client.py without ``--image`` calls :func:`run`. It opens the camera (a
device index, a video file or a stream URL) and then either

* shows a preview window (OpenCV HighGUI): SPACE or ENTER captures, q or ESC
  (or closing the window) quits. Each shot is sent at once and gets a tile
  in the strip below the live picture, with its own answer (or how long it
  has waited); the arrow keys step through them, and the card above the
  strip shows the selected shot in full: its thumbnail, common and scientific
  name, probability, the top matches and coloured badges for dangerous,
  venomous, poisonous and threatened animals; or
* without a display (SSH, a headless PC) or with ``--no-window``, reads the
  terminal: Enter captures, q+Enter quits at once, end of input (Ctrl-D)
  quits once the answers are in. Answers are printed as they arrive.

More shots may be taken while earlier ones wait; every answer goes back to
its own shot by message id. Mail never blocks the preview: a worker thread
owns the Requester (sending and polling) and talks to the UI through queues.

The pure parts -- JPEG encoding, the shot bookkeeping, drawing the answer
card and the preview -- take arrays and dicts, so they are tested without a
camera, a display or mail. OpenCV, NumPy and Pillow are imported on first
use: client.py imports this package on every start to add its arguments.

One module per concern, each importing only modules listed before it:

* ``settings``  the command line and the [camera]/[client] settings;
* ``imaging``   JPEG encode/decode, fit and shrink;
* ``shots``     Shot and ShotBook: each shot from capture to answer;
* ``text``      fonts and the TextPainter;
* ``card``      the answer card of one shot;
* ``strip``     the strip of recent shots and which one the card shows;
* ``camera``    the camera and the frame pacer;
* ``display``   whether a window can open (X11 probing);
* ``mailer``    mail in its own thread;
* ``archive``   keeping shots and answers on disk;
* ``session``   what both front ends share;
* ``terminal``  the terminal front end, and the Console both front ends write to;
* ``window``    the window front end;
* ``app``       the entry point, :func:`run`.
"""

from __future__ import annotations

from animalid.client.capture.app import run
from animalid.client.capture.archive import ShotArchive
from animalid.client.capture.card import BADGE_COLOURS, GOLD, WHITE, card_text, card_width, layout_unit, render_card
from animalid.client.capture.imaging import decode_jpeg, encode_jpeg
from animalid.client.capture.settings import (
                                          CaptureSettings,
                                          add_capture_arguments,
                                          camera_source,
                                          describe_source,
                                          parse_resolution,
)
from animalid.client.capture.shots import Shot, ShotBook, waiting_summary
from animalid.client.capture.strip import StripLayout, render_strip
from animalid.client.capture.text import TextPainter
from animalid.client.capture.window import WINDOW_NAME

__all__ = [
    "BADGE_COLOURS", "GOLD", "WHITE", "WINDOW_NAME", "CaptureSettings", "Shot", "ShotArchive",
    "ShotBook", "TextPainter", "add_capture_arguments", "camera_source", "card_text",
    "card_width", "decode_jpeg", "describe_source", "encode_jpeg", "layout_unit",
    "parse_resolution", "render_card", "render_strip", "run", "StripLayout", "waiting_summary",
]
