"""Peak memory of decoding one hostile mail: ten 40-megapixel RGBA PNGs (about 1.7 MB).

Each figure comes from a fresh process: its peak resident memory (VmHWM),
reset after start-up (and after loading the model), so the figure is what
the mail itself costs. Two parts:

* ``decode``: the ten pictures through N decoding threads, without the
  model: the old way (``images.load_image``, then the classifier's whole-factor
  reduction) and the new one (``decoding.decode_reduced`` with the shared
  ``DecodeBudget``);
* ``classify``: the real classifier (config.ini's model) on the same mail, with
  ``decode_threads`` = N: what server.py would peak at.

Target (issue 18): at most 1 GB for that mail, whatever the number of threads.

    python benchmarks/decode_memory.py                 # both parts, threads 1 2 4 8
    python benchmarks/decode_memory.py --part decode --threads 1 16
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIDE = 6320  # 6320 x 6320 = 39.9 million pixels, under the 40 MP pixel limit
COUNT = 10
NEEDED = (2 * 260, 2 * 292)  # what the default ensemble's largest network needs (2 x crop, 2 x resize)


def make_png() -> bytes:
    """One 40 MP RGBA PNG that compresses to a few hundred kB: a cut-out on transparency."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for step in range(0, SIDE, 400):
        draw.ellipse((step // 3, step // 2, SIDE - step // 4, SIDE - step // 5),
                     outline=(step % 256, 120, 255 - step % 256, 255), width=3)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(part: str, way: str, threads: int, png_path: str) -> dict:
    data = Path(png_path).read_bytes()
    items = [(f"big-{n}.png", data) for n in range(COUNT)]
    started = time.perf_counter()
    if part == "decode":
        from animalid.recognition.decode_budget import DecodeBudget
        from animalid.recognition.decoding import decode_reduced, reduction_factor
        from animalid.recognition.images import load_image

        budget = DecodeBudget()

        def old(item):
            image = load_image(item[1], 40_000_000)
            factor = reduction_factor(image.size, NEEDED)
            return image.reduce(factor) if factor >= 2 else image

        def new(item):
            return decode_reduced(item[1], NEEDED, 40_000_000, budget)

        function = old if way == "old" else new
        if way == "new":
            from animalid.recognition.decoding import keep_freed_pictures_out_of_the_heap

            keep_freed_pictures_out_of_the_heap()
        base = rss_mb()
        reset_peak()
        with ThreadPoolExecutor(threads) as pool:
            sizes = [image.size for image in pool.map(function, items)]
        result = {"sizes": sorted(set(sizes))}
    else:
        raise SystemExit("classify: see main()")
    return {"part": part, "way": way, "threads": threads, "base_mb": round(base),
            "peak_mb": round(peak_mb()), "seconds": round(time.perf_counter() - started, 2), **result}


def classify_child(threads: int, png_path: str) -> dict:
    from animalid.cli.settings import classifier as build_classifier
    from animalid.config import load_config

    data = Path(png_path).read_bytes()
    items = [(f"big-{n}.png", data) for n in range(COUNT)]
    classifier = build_classifier(load_config(ROOT / "config.ini"), decode_threads=threads)
    classifier.classify([("warm.png", data)])  # first-call allocations are not the mail's
    base = rss_mb()
    reset_peak()
    started = time.perf_counter()
    answers = classifier.classify(items)
    return {"part": "classify", "way": classifier.backend, "threads": threads, "base_mb": round(base),
            "peak_mb": round(peak_mb()), "seconds": round(time.perf_counter() - started, 2),
            "errors": sum("error" in answer for answer in answers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("decode", "classify", "both"), default="both")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--child", nargs=4, metavar=("PART", "WAY", "THREADS", "PNG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        part, way, threads, png = args.child
        result = classify_child(int(threads), png) if part == "classify" else child(part, way, int(threads), png)
        print(json.dumps(result))
        return
    png = Path("/tmp/animalid-40mp.png")
    if not png.exists():
        png.write_bytes(make_png())
    print(f"mail: {COUNT} x {SIDE}x{SIDE} RGBA PNG, {png.stat().st_size / 1e3:.0f} kB each "
          f"({COUNT * png.stat().st_size / 1e6:.1f} MB in all)")
    runs = []
    if args.part in ("decode", "both"):
        runs += [("decode", way, n) for way in ("old", "new") for n in args.threads]
    if args.part in ("classify", "both"):
        runs += [("classify", "server", n) for n in args.threads]
    print(f"{'part':9} {'way':7} {'threads':>7} {'base MB':>8} {'+peak MB':>9} {'peak MB':>8} {'s':>6}")
    for part, way, threads in runs:
        done = subprocess.run([sys.executable, __file__, "--child", part, way, str(threads), str(png)],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(f"{part:9} {way:7} {threads:>7} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{part:9} {way:7} {threads:>7} {result['base_mb']:>8} "
              f"{result['peak_mb'] - result['base_mb']:>9} {result['peak_mb']:>8} {result['seconds']:>6}")
    print("target: peak MB <= 1024 for the classify part, whatever the thread count")


if __name__ == "__main__":
    main()
