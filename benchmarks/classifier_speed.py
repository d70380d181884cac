#!/usr/bin/env python3
"""Print the classifier's speed and memory figures, for each mode in models/ and each backend.

For each mode (``models/fast.json``, ``models/balanced.json``,
``models/full.json``; config.ini's ``[classifier] model`` picks one) and each
backend (``torch``: PyTorch; ``onnx``: ONNX Runtime, side by side with the
ratio onnx / torch):

* cold start: a fresh ``python classifier.py --json --model MODE --backend B
  IMAGE`` process, from exec to the printed answer (median of 3), beside a
  bare ``import torch`` process, which is the framework's own share;
* end to end, start-up included: a fresh process that loads the mode and
  classifies 16 phone photos (12 MP JPEGs), images per second of its whole
  run, and its peak RSS, beside a process that only imports torch;
* latency per image at batch 1: decode + preprocess + every network and view
  + answer, median and p95, for the small demo photo and for a 12-megapixel
  JPEG (4032 x 3024, what a phone sends);
* throughput: images per second with BATCH_SIZE tensors per forward pass
  (an image brings one tensor per view) and, for comparison, other sizes;
* for config.ini's mode, 16 phone photos in a warm process: the networks
  alone, end to end with the decoding threads, and decoding in one thread.

The modes and backends are timed in turns within one run, so their figures
compare even when the machine is busy; compare figures within one run.
``--threads`` instead measures the ONNX backend's thread settings (ONNX
Runtime's intra-op threads, decoding threads, spinning) end to end
(docs/speed.md, "Threads").

    python benchmarks/classifier_speed.py [--runs 20] [--modes fast,balanced,full] [--backends torch,onnx]
    python benchmarks/classifier_speed.py --threads [--modes balanced]

The mode in config.ini must keep its batch-1 latency at or under 0.5 s per
image on 2 CPU cores (docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "tests" / "photos" / "tiger.png"
MODES = ("fast", "balanced", "full")
BACKENDS = ("torch", "onnx")

# VmHWM, not ru_maxrss: ru_maxrss survives fork+exec, so a child of this
# (large) benchmark process would report the parent's peak.
PEAK_RSS_SNIPPET = ("import sys; {body}; "
                    "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")


def timed_process(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def peak_rss_mb(body: str) -> float:
    return peak_rss_and_seconds(body)[0]


def peak_rss_and_seconds(body: str) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds from exec to exit) of a fresh process running ``body``."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK_RSS_SNIPPET.format(body=body)], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024, time.perf_counter() - started


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
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated backends: torch, onnx")
    parser.add_argument("--threads", action="store_true",
                        help="measure the ONNX backend's thread settings instead (end to end, 16 phone photos)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    paths = {mode: ROOT / "models" / f"{mode}.json" for mode in modes}

    from animalid.cli import settings as edge
    from animalid.config import load_config
    from animalid.recognition.model import EnsembleSpec

    config = load_config()
    if args.threads:
        return thread_settings(config, EnsembleSpec.load(paths[modes[0]]), modes[0])
    configured = config.section("classifier").get_path("model").resolve()
    keys = [(mode, backend) for mode in modes for backend in backends]
    figures: dict = {key: {} for key in keys}
    phone = phone_photo()
    with tempfile.NamedTemporaryFile(suffix=".jpg") as phone_file:
        phone_file.write(phone)
        phone_file.flush()
        torch_import = statistics.median(timed_process([sys.executable, "-c", "import torch, torchvision"])
                                         for _ in range(3))
        torch_rss = peak_rss_mb("import torch, torchvision")
        for _ in range(3):  # in turns: a busy machine slows every key alike
            for mode, backend in keys:
                figures[(mode, backend)].setdefault("cold", []).append(timed_process(
                    [sys.executable, "classifier.py", "--json", "--model", str(paths[mode]), "--backend", backend,
                     str(PHOTO)]))
        for key in keys:
            figures[key]["cold_start_s"] = statistics.median(figures[key].pop("cold"))
        for mode, backend in keys:
            rss, seconds = peak_rss_and_seconds(
                "from animalid.config import load_config; from animalid.cli import settings as edge; "
                "from animalid.recognition.model import EnsembleSpec; "
                f"c = edge.classifier(load_config(), spec=EnsembleSpec.load({str(paths[mode])!r}), "
                f"backend={backend!r}); "
                f"c.classify([('x', {phone_file.name!r})] * 16)")
            figures[(mode, backend)].update(peak_rss_mb=rss, fresh_16_ips=16 / seconds)

    import animalid.recognition.classifier as classifier_module

    if "torch" in backends:
        import torch  # noqa: F401  (imported before the clock starts: "load" is the networks alone)
        from torchvision.models import EfficientNet_B0_Weights  # noqa: F401
    classifiers = {}
    for mode, backend in keys:
        started = time.perf_counter()
        classifiers[(mode, backend)] = edge.classifier(config, spec=EnsembleSpec.load(paths[mode]),
                                                       backend=backend)
        figures[(mode, backend)]["load_s"] = time.perf_counter() - started
        assert classifiers[(mode, backend)].backend == backend, f"{mode}: {backend} not available"
    photos = {"demo photo": PHOTO.read_bytes(), "12 MP JPEG": phone}
    latencies = {(key, photo): [] for key in keys for photo in photos}
    for classifier in classifiers.values():
        classifier.classify([("warmup", photos["demo photo"])])
    for run in range(args.runs):  # the modes and backends in turns: a busy machine slows them alike
        for key, classifier in classifiers.items():
            for photo, data in photos.items():
                if photo != "demo photo" and run % 4:
                    continue  # a quarter as many runs for the big photo
                started = time.perf_counter()
                classifier.classify([(photo, data)])
                latencies[(key, photo)].append(time.perf_counter() - started)
    for (key, photo), values in latencies.items():
        name = "latency_ms" if photo == "demo photo" else "latency_12mp_ms"
        figures[key][name] = 1000 * statistics.median(values)
        figures[key][name + "_p95"] = 1000 * percentile(values, 0.95)
        figures[key][name + "_best"] = 1000 * min(values)

    chosen = classifier_module.BATCH_SIZE
    items = [(f"img{i}", photos["demo photo"]) for i in range(8)]
    for key, classifier in classifiers.items():
        rates = {}
        placement = classifier.placement
        for batch_size in sorted({1, chosen, 4}):
            classifier.placement = replace(placement, batch_tensors=batch_size)  # tensors per pass
            classifier.classify(items[:batch_size])
            started = time.perf_counter()
            classifier.classify(items)
            rates[batch_size] = len(items) / (time.perf_counter() - started)
        classifier.placement = placement
        figures[key]["throughput_ips"] = rates[chosen]
        figures[key]["throughput_by_batch"] = {b: round(r, 1) for b, r in rates.items()}
    pipeline_mode = next((m for m in modes if paths[m].resolve() == configured), modes[0])
    pipelines = {backend: pipeline_figures(classifiers[(pipeline_mode, backend)], phone) for backend in backends}

    print("latency per image at batch 1, ms: median / p95 / best of the runs (the best is the closest "
          "to an idle machine); end to end: a fresh process loading the mode and answering 16 phone photos")
    print(f"{'mode':<9} {'backend':<7} {'passes':>6} {'demo photo':>16} {'12 MP JPEG':>18} "
          f"{'images/s':>9} {'end to end':>11} {'cold start':>10} {'load':>6} {'peak RSS':>9}")
    for mode, backend in keys:
        f, spec = figures[(mode, backend)], classifiers[(mode, backend)].spec
        passes = len(spec.members) * len(spec.views)
        star = " (config.ini)" if paths[mode].resolve() == configured else ""
        small = f"{f['latency_ms']:.0f} / {f['latency_ms_p95']:.0f} / {f['latency_ms_best']:.0f}"
        big = f"{f['latency_12mp_ms']:.0f} / {f['latency_12mp_ms_p95']:.0f} / {f['latency_12mp_ms_best']:.0f}"
        print(f"{mode:<9} {backend:<7} {passes:>6} {small:>16} {big:>18} {f['throughput_ips']:>9.1f}"
              f" {f['fresh_16_ips']:>7.1f}/s {f['cold_start_s']:>8.2f} s {f['load_s']:>5.2f}s"
              f" {f['peak_rss_mb']:>6.0f} MB{star}")
    if set(backends) >= {"torch", "onnx"}:
        print("onnx against torch (ratio; below 1 is better for times and memory, above 1 for images/s):")
        for mode in modes:
            o, t = figures[(mode, "onnx")], figures[(mode, "torch")]
            print(f"  {mode:<9} latency {o['latency_ms'] / t['latency_ms']:.2f}x, 12 MP "
                  f"{o['latency_12mp_ms'] / t['latency_12mp_ms']:.2f}x, images/s "
                  f"{o['throughput_ips'] / t['throughput_ips']:.2f}x, end to end "
                  f"{o['fresh_16_ips'] / t['fresh_16_ips']:.2f}x, cold start "
                  f"{o['cold_start_s'] / t['cold_start_s']:.2f}x, peak RSS {o['peak_rss_mb'] / t['peak_rss_mb']:.2f}x")
    print(f"images/s by BATCH_SIZE, tensors per forward pass (classifier.py uses {chosen}): " +
          "; ".join(f"{mode}/{backend} {figures[(mode, backend)]['throughput_by_batch']}" for mode, backend in keys))
    print(f"a process that only imports torch and torchvision: {torch_import:.2f} s, {torch_rss:.0f} MB")
    for backend, pipeline in pipelines.items():
        print(f"{pipeline_mode}/{backend}, 16 phone photos (12 MP JPEG) on {pipeline['device']}: network alone "
              f"{pipeline['network_ips']:.1f} images/s; end to end {pipeline['threads_ips']:.1f} images/s with "
              f"{pipeline['threads']} decoding threads = "
              f"{100 * pipeline['threads_ips'] / pipeline['network_ips']:.0f}% of the network alone; decoding on "
              f"one thread {pipeline['serial_ips']:.1f} images/s")
    print(json.dumps({f"{mode}/{backend}": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in f.items()}
                      for (mode, backend), f in figures.items()}))
    return 0


def thread_settings(config, spec, mode: str) -> int:
    """The ONNX backend end to end on 16 phone photos under each thread setting, in turns
    (median of 3): ONNX Runtime's intra-op threads x decoding threads x spinning."""
    from animalid.cli import settings as edge
    from animalid.recognition.onnx_backend import OnnxNetworks

    items = [(f"photo{i}", phone_photo()) for i in range(16)]
    settings = [(ort, decode, spin) for spin in (False, True) for ort in (1, 2) for decode in (1, 2)]
    classifiers = {}
    for ort, decode, spin in settings:
        classifier = edge.classifier(config, spec=spec, backend="onnx", threads=ort, decode_threads=decode)
        if spin:
            classifier.onnx = OnnxNetworks(classifier.spec, classifier.kb, ort, spinning=True)
        classifier.classify(items[:2])
        classifiers[(ort, decode, spin)] = classifier
    rates: dict = {key: [] for key in classifiers}
    for _ in range(3):
        for key, classifier in classifiers.items():
            started = time.perf_counter()
            classifier.classify(items)
            rates[key].append(len(items) / (time.perf_counter() - started))
    print(f"{mode}/onnx, 16 phone photos end to end, images/s (median of 3); the decoding threads work "
          f"in the background, ahead of ONNX Runtime")
    for (ort, decode, spin), values in rates.items():
        print(f"  ONNX Runtime threads {ort}, decoding threads {decode}, spinning {'on ' if spin else 'off'}: "
              f"{statistics.median(values):5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
