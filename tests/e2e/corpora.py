"""Outside test corpora for the robustness tests: fetched on first use, cached, never committed.

* **CPython's email test data** (``Lib/test/test_email/data``: RFC 5322 / MIME
  messages collected from bug reports, plus the small images they attach).
  Taken from the running interpreter's ``test`` package; else from Debian's
  ``libpython3.X-testsuite`` (installed, or fetched with ``apt-get download``
  and unpacked with ``dpkg-deb -x``, which needs no root). The Makefile lists
  the package in APT_PACKAGES for CI.
* **Pillow's test images** (``Tests/images`` of the Pillow sdist, the same
  version as the installed Pillow): fuzzer crashes, decompression bombs,
  truncated and malformed files in every format Pillow knows. Fetched with
  ``pip download --no-binary :all: --no-deps pillow==VERSION`` (pip builds the
  sdist's metadata, about a minute once); only ``Tests/images`` is unpacked.

Both are cached under ``.cache/corpora/`` (gitignored). A test that cannot
have a corpus is skipped with the reason, never silently passed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "corpora"
PIP_TIMEOUT_S = 600
APT_TIMEOUT_S = 300
# A sample file over this size is left out: it costs mail time, not coverage.
MAX_SAMPLE_FILE_BYTES = 3_000_000
HOSTILE_NAME = re.compile(r"crash|timeout|oom|broken|trunc|bad|invalid|corrupt|fuzz|bomb|overflow|"
                          r"negative|overrun|zero|leak|dos|oob|damaged|missing|wrong", re.IGNORECASE)


class CorpusUnavailable(Exception):
    """The corpus cannot be had here; the message says why."""


# -- CPython's email test data ------------------------------------------------------

def cpython_email_dir() -> Path:
    """The cached copy of Lib/test/test_email/data (fetched on first use)."""
    target = CACHE / "cpython-email"
    if list(target.glob("msg_*.txt")):
        return target
    errors = []
    for source in (_stdlib_email_data, _debian_email_data, _apt_download_email_data):
        try:
            found = source()
        except CorpusUnavailable as exc:
            errors.append(str(exc))
            continue
        _copy_tree(found, target, note=f"copied from {found}\n")
        return target
    raise CorpusUnavailable("CPython email test data not found: " + "; ".join(errors))


def cpython_email_messages() -> list[Path]:
    return sorted(cpython_email_dir().glob("msg_*.txt"))


def cpython_email_images() -> list[Path]:
    """The images the email tests attach (python.gif, python.jpg ...)."""
    return sorted(p for p in cpython_email_dir().glob("python.*") if p.is_file())


def _stdlib_email_data() -> Path:
    try:
        spec = importlib.util.find_spec("test.test_email")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CorpusUnavailable("this Python has no test.test_email package")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not list(data.glob("msg_*.txt")):
        raise CorpusUnavailable(f"{data} has no msg_*.txt")
    return data


def _debian_email_data() -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for data in (Path("/usr/lib") / version / "test/test_email/data",
                 *sorted(Path("/usr/lib").glob("python3*/test/test_email/data"))):
        if list(data.glob("msg_*.txt")):
            return data
    raise CorpusUnavailable(f"libpython3-testsuite is not installed (no /usr/lib/{version}/test)")


def _apt_download_email_data() -> Path:
    """apt-get download (no root) the testsuite package and unpack it with dpkg-deb."""
    package = f"libpython{sys.version_info.major}.{sys.version_info.minor}-testsuite"
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise CorpusUnavailable("no apt-get / dpkg-deb to fetch " + package)
    work = Path(tempfile.mkdtemp(prefix="corpus-apt-"))
    try:
        _run(["apt-get", "download", "-q", package], work, APT_TIMEOUT_S, f"apt-get download {package}")
        debs = list(work.glob("*.deb"))
        if not debs:
            raise CorpusUnavailable(f"apt-get download {package} gave no .deb")
        _run(["dpkg-deb", "-x", str(debs[0]), str(work / "x")], work, APT_TIMEOUT_S, "dpkg-deb -x")
        found = sorted((work / "x").glob("usr/lib/python3*/test/test_email/data"))
        if not found:
            raise CorpusUnavailable(f"{package} has no test_email/data")
        keep = Path(tempfile.mkdtemp(prefix="corpus-email-"))
        _copy_tree(found[0], keep / "data")
        return keep / "data"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- Pillow's test images -------------------------------------------------------------

def pillow_images_dir() -> Path:
    """The cached Tests/images of the installed Pillow's sdist (fetched on first use)."""
    import PIL

    version = PIL.__version__
    target = CACHE / f"pillow-{version}-images"
    if (target / ".complete").exists():
        return target
    work = Path(tempfile.mkdtemp(prefix="corpus-pillow-"))
    try:
        _run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
              "--disable-pip-version-check", "-q", f"pillow=={version}", "-d", str(work)],
             work, PIP_TIMEOUT_S, f"pip download pillow=={version} (sdist)")
        archives = list(work.glob("pillow-*.tar.gz")) + list(work.glob("Pillow-*.tar.gz"))
        if not archives:
            raise CorpusUnavailable(f"pip download gave no pillow-{version} sdist")
        staging = work / "images"
        _extract_test_images(archives[0], staging)
        _copy_tree(staging, target, note=f"Tests/images of {archives[0].name}\n")
        (target / ".complete").write_text(version + "\n")
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _extract_test_images(archive: Path, into: Path) -> None:
    """Only regular files under */Tests/images/, with no way out of ``into``."""
    into.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if len(parts) < 4 or parts[1:3] != ("Tests", "images") or not member.isfile():
                continue
            relative = Path(*parts[3:])
            if ".." in relative.parts or relative.is_absolute():
                continue
            destination = into / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink)


def pillow_sample(images_dir: Path, size: int = 60) -> list[Path]:
    """A fixed, deterministic sample: one file per extension (a hostile-looking name
    first), then more hostile-named files in a stable hash order, up to ``size``
    (more when there are more extensions than that: every one is covered)."""
    files = sorted(p for p in images_dir.rglob("*")
                   if p.is_file() and not p.name.startswith(".")
                   and p.stat().st_size <= MAX_SAMPLE_FILE_BYTES)
    by_extension: dict[str, list[Path]] = {}
    for path in files:
        by_extension.setdefault(path.suffix.lower() or "(none)", []).append(path)
    chosen = [min(group, key=lambda p: (not HOSTILE_NAME.search(p.name), str(p)))
              for _, group in sorted(by_extension.items())]
    taken = set(chosen)
    extra = sorted((p for p in files if p not in taken and HOSTILE_NAME.search(p.name)),
                   key=lambda p: hashlib.sha256(str(p.relative_to(images_dir)).encode()).hexdigest())
    return chosen + extra[:max(0, size - len(chosen))]


# -- plumbing ---------------------------------------------------------------------------

def corpus_or_skip(getter, *args):
    """``getter(*args)``, or skip the test saying why the corpus is not there."""
    try:
        return getter(*args)
    except CorpusUnavailable as exc:
        pytest.skip(f"corpus unavailable: {exc}")


def _run(argv: list[str], cwd: Path, timeout: float, what: str) -> None:
    try:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CorpusUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CorpusUnavailable(f"{what} failed ({result.returncode}): {tail[0][:200]}")


def _copy_tree(source: Path, target: Path, note: str = "") -> None:
    """Copy into place atomically: a half-copied cache is never taken as complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        shutil.copytree(source, staging / "tree")
        if note:
            (staging / "tree" / ".source").write_text(note)
        shutil.rmtree(target, ignore_errors=True)
        (staging / "tree").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
