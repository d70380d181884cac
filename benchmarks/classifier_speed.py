#!/usr/bin/env python3
"""Print the classifier's speed and memory figures.

* cold start: a fresh ``python classifier.py --json IMAGE`` process, from exec
  to the printed answer (median of 3), beside a bare ``import torch``
  process, which is the framework's own share;
* latency per image at batch 1: decode + preprocess + network + answer,
  median and p95;
* throughput at the best batch size (network and preprocessing);
* peak RSS of a classifying process, beside a process that only imports torch.

    python benchmarks/classifier_speed.py [--runs 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "tests" / "photos" / "tiger.png"

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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="timed runs per figure")
    args = parser.parse_args()

    classify_rss = peak_rss_mb(
        "from animalid.config import load_config; from animalid.recognition.classifier import Classifier; "
        f"c = Classifier.from_config(load_config()); c.classify([('x', open({str(PHOTO)!r}, 'rb').read())] * 16)")
    torch_rss = peak_rss_mb("import torch, torchvision")
    cold = statistics.median(timed_process([sys.executable, "classifier.py", "--json", str(PHOTO)])
                             for _ in range(3))
    torch_import = statistics.median(timed_process([sys.executable, "-c", "import torch, torchvision"])
                                     for _ in range(3))
    print(f"cold start to first answer: {cold:.2f} s median "
          f"(a process that only imports torch and torchvision: {torch_import:.2f} s = "
          f"{100 * torch_import / cold:.0f}%)")

    from animalid.config import load_config
    from animalid.recognition.classifier import Classifier

    classifier = Classifier.from_config(load_config())
    data = PHOTO.read_bytes()
    classifier.classify([("warmup", data)])
    latencies = []
    for _ in range(args.runs):
        started = time.perf_counter()
        classifier.classify([("tiger", data)])
        latencies.append(time.perf_counter() - started)
    print(f"latency per image, batch 1: {1000 * statistics.median(latencies):.1f} ms median, "
          f"{1000 * percentile(latencies, 0.95):.1f} ms p95 ({args.runs} runs)")

    import animalid.recognition.classifier as classifier_module

    best = (0.0, 0)
    items = [(f"img{i}", data) for i in range(32)]
    chosen = classifier_module.BATCH_SIZE
    for batch_size in (1, 2, 4, 8, 16):
        classifier_module.BATCH_SIZE = batch_size  # images per forward pass
        classifier.classify(items[:batch_size])
        started = time.perf_counter()
        for _ in range(2):
            classifier.classify(items)
        rate = 2 * len(items) / (time.perf_counter() - started)
        print(f"  {len(items)} images in forward passes of {batch_size:>2}: {rate:5.1f} images/s")
        best = max(best, (rate, batch_size))
    classifier_module.BATCH_SIZE = chosen
    print(f"throughput: {best[0]:.1f} images/s at batch {best[1]} (classifier.py uses {chosen})")

    print(f"peak RSS classifying a batch of 16: {classify_rss:.0f} MB "
          f"(importing torch and torchvision alone: {torch_rss:.0f} MB = {100 * torch_rss / classify_rss:.0f}%)")
    print(json.dumps({"cold_start_s": round(cold, 2), "latency_ms_median": round(1000 * statistics.median(latencies), 1),
                      "throughput_ips": round(best[0], 1), "peak_rss_mb": round(classify_rss)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
