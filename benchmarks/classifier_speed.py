#!/usr/bin/env python3
"""Print the classifier's speed and memory figures, for each mode in models/.

For each mode (``models/fast.json``, ``models/balanced.json``,
``models/full.json``; config.ini's ``[classifier] model`` picks one):

* cold start: a fresh ``python classifier.py --json --model MODE IMAGE``
  process, from exec to the printed answer (median of 3), beside a bare
  ``import torch`` process, which is the framework's own share;
* latency per image at batch 1: decode + preprocess + every network and view
  + answer, median and p95, for the small demo photo and for a 12-megapixel
  JPEG (4032 x 3024, what a phone sends);
* throughput: images per second with BATCH_SIZE tensors per forward pass
  (an image brings one tensor per view) and, for comparison, other sizes;
* peak RSS of a process that loads the mode and classifies 16 images, beside
  a process that only imports torch.

The modes are timed in turns within one run, so their figures compare even
when the machine is busy; compare figures within one run.

    python benchmarks/classifier_speed.py [--runs 20] [--modes fast,balanced,full]

The mode in config.ini must keep its batch-1 latency at or under 0.5 s per
image on 2 CPU cores (README, "Accuracy").
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "tests" / "photos" / "tiger.png"
MODES = ("fast", "balanced", "full")

# VmHWM, not ru_maxrss: ru_maxrss survives fork+exec, so a child of this
# (large) benchmark process would report the parent's peak.
PEAK_RSS_SNIPPET = ("import sys; {body}; "
                    "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")


def timed_process(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def peak_rss_mb(body: str) -> float:
    out = subprocess.run([sys.executable, "-c", PEAK_RSS_SNIPPET.format(body=body)], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def pipeline_figures(classifier, jpeg: bytes, count: int = 16) -> dict:
    """End-to-end images/s (decode, preprocess, networks, answers) with the decoding
    threads and on one thread, beside the networks alone on the same tensors."""
    items = [(f"photo{i}", jpeg) for i in range(count)]
    classifier.classify(items[:2])  # warm up
    figures = {"device": str(classifier.device), "threads": classifier.placement.decode_threads}
    started = time.perf_counter()
    classifier.classify(items)
    figures["threads_ips"] = count / (time.perf_counter() - started)
    pool, classifier._pool = classifier._pool, None
    started = time.perf_counter()
    classifier.classify(items)
    figures["serial_ips"] = count / (time.perf_counter() - started)
    classifier._pool = pool
    prepared = [classifier.prepare(item) for item in items]
    per_pass = max(1, classifier.placement.batch_tensors // len(classifier.spec.views))
    started = time.perf_counter()
    for start in range(0, count, per_pass):
        classifier._forward(prepared[start:start + per_pass])
    figures["network_ips"] = count / (time.perf_counter() - started)
    return figures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def phone_photo() -> bytes:
    """The demo photo blown up to 4032 x 3024, as a phone's JPEG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((4032, 3024)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per latency figure")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes (models/MODE.json)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    paths = {mode: ROOT / "models" / f"{mode}.json" for mode in modes}

    from animalid.cli import settings as edge
    from animalid.config import load_config
    from animalid.recognition.model import EnsembleSpec

    config = load_config()
    configured = config.section("classifier").get_path("model").resolve()
    figures = {mode: {} for mode in modes}

    torch_import = statistics.median(timed_process([sys.executable, "-c", "import torch, torchvision"])
                                     for _ in range(3))
    torch_rss = peak_rss_mb("import torch, torchvision")
    for mode in modes:
        figures[mode]["cold_start_s"] = statistics.median(
            timed_process([sys.executable, "classifier.py", "--json", "--model", str(paths[mode]), str(PHOTO)])
            for _ in range(3))
        figures[mode]["peak_rss_mb"] = peak_rss_mb(
            "from animalid.cli import settings as edge; from animalid.config import load_config; "
            "from animalid.recognition.model import EnsembleSpec; "
            f"c = edge.classifier(load_config(), spec=EnsembleSpec.load({str(paths[mode])!r})); "
            f"c.classify([('x', open({str(PHOTO)!r}, 'rb').read())] * 16)")

    import torch  # noqa: F401  (imported before the clock starts: "load" is the networks alone)
    from torchvision.models import EfficientNet_B0_Weights  # noqa: F401

    import animalid.recognition.classifier as classifier_module

    classifiers = {}
    for mode in modes:
        started = time.perf_counter()
        classifiers[mode] = edge.classifier(config, spec=EnsembleSpec.load(paths[mode]))
        figures[mode]["load_s"] = time.perf_counter() - started
    photos = {"demo photo": PHOTO.read_bytes(), "12 MP JPEG": phone_photo()}
    latencies = {(mode, photo): [] for mode in modes for photo in photos}
    for classifier in classifiers.values():
        classifier.classify([("warmup", photos["demo photo"])])
    for run in range(args.runs):  # the modes in turns: a busy machine slows them alike
        for mode, classifier in classifiers.items():
            for photo, data in photos.items():
                if photo != "demo photo" and run % 4:
                    continue  # a quarter as many runs for the big photo
                started = time.perf_counter()
                classifier.classify([(photo, data)])
                latencies[(mode, photo)].append(time.perf_counter() - started)
    for (mode, photo), values in latencies.items():
        key = "latency_ms" if photo == "demo photo" else "latency_12mp_ms"
        figures[mode][key] = 1000 * statistics.median(values)
        figures[mode][key + "_p95"] = 1000 * percentile(values, 0.95)
        figures[mode][key + "_best"] = 1000 * min(values)

    chosen = classifier_module.BATCH_SIZE
    items = [(f"img{i}", photos["demo photo"]) for i in range(8)]
    for mode, classifier in classifiers.items():
        rates = {}
        placement = classifier.placement
        for batch_size in sorted({1, chosen, 4}):
            classifier.placement = replace(placement, batch_tensors=batch_size)  # tensors per pass
            classifier.classify(items[:batch_size])
            started = time.perf_counter()
            classifier.classify(items)
            rates[batch_size] = len(items) / (time.perf_counter() - started)
        classifier.placement = placement
        figures[mode]["throughput_ips"] = rates[chosen]
        figures[mode]["throughput_by_batch"] = {b: round(r, 1) for b, r in rates.items()}
    pipeline = pipeline_figures(classifiers[modes[0]], photos["12 MP JPEG"])

    print("latency per image at batch 1, ms: median / p95 / best of the runs (the best is the closest "
          "to an idle machine)")
    print(f"{'mode':<10} {'passes':>6} {'demo photo':>20} {'12 MP JPEG':>20} "
          f"{'images/s':>9} {'cold start':>10} {'load':>6} {'peak RSS':>9}")
    for mode in modes:
        f, spec = figures[mode], classifiers[mode].spec
        passes = len(spec.members) * len(spec.views)
        star = " (config.ini)" if paths[mode].resolve() == configured else ""
        small = f"{f['latency_ms']:.0f} / {f['latency_ms_p95']:.0f} / {f['latency_ms_best']:.0f}"
        big = f"{f['latency_12mp_ms']:.0f} / {f['latency_12mp_ms_p95']:.0f} / {f['latency_12mp_ms_best']:.0f}"
        print(f"{mode:<10} {passes:>6} {small:>20} {big:>20} {f['throughput_ips']:>9.1f}"
              f" {f['cold_start_s']:>8.2f} s {f['load_s']:>5.2f}s {f['peak_rss_mb']:>6.0f} MB{star}")
    print(f"images/s by BATCH_SIZE, tensors per forward pass (classifier.py uses {chosen}): " +
          "; ".join(f"{mode} {figures[mode]['throughput_by_batch']}" for mode in modes))
    print(f"a process that only imports torch and torchvision: {torch_import:.2f} s, {torch_rss:.0f} MB")
    print(f"{modes[0]}, 16 phone photos (12 MP JPEG) on {pipeline['device']}: network alone "
          f"{pipeline['network_ips']:.1f} images/s; end to end {pipeline['threads_ips']:.1f} images/s with "
          f"{pipeline['threads']} decoding threads = {100 * pipeline['threads_ips'] / pipeline['network_ips']:.0f}% "
          f"of the network alone; decoding on one thread {pipeline['serial_ips']:.1f} images/s")
    print(json.dumps({mode: {k: (round(v, 2) if isinstance(v, float) else v) for k, v in f.items()}
                      for mode, f in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
