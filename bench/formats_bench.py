"""Output formats: ``convert --format hf`` and ``coco-panoptic`` against the pickle, in one run.

Each format converts the same synthetic Label Studio export (default: 8 images of 4000x3000,
20 anti-aliased brush regions + 10 polygons each) in its own fresh process, so that each peak
memory is its own, in alternating rounds, once with ``--jobs 1`` and once with the default
jobs (the CPUs). Then every output is read back with ``open_snapshot`` and compared with the
pickle, bit for bit.

    python bench/formats_bench.py [--images 8] [--size 4000x3000] [--rounds 3] [--photos textured]
        [--upright] [--jobs 1 2]

The photos (``--photos textured``, the default) are JPEGs at quality 92 of a smooth picture
with texture at three scales, sharp-edged shapes and sensor grain, about 0.3 bytes a pixel
(a 12 MP phone photo is 3-5 MB; the Unsplash photo among the peers' files is 0.2 bytes a
pixel); image 0 is stored sideways with EXIF orientation 6, so hf and coco re-encode it
(``--upright``: not).
``--photos noise`` keeps the generator's own (``devstack.synthetic``: a gradient under
per-pixel noise, half of them PNG; about 13 MB a photo, which no codec compresses).

Prints, per jobs and format, the median convert time (and this process's CPU time), peak
memory and size on disk, and each as a ratio to the pickle's of the same jobs (targets: time
<= 2x, disk >= 20x smaller, peak memory <= 1.5x). Peak memory: ``--jobs 1`` the process's
VmHWM; more jobs the sum of the proportional set sizes (PSS) of the process and its workers
(and their forkserver), sampled every 20 ms. No pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FORMATS = {"pickle": "gt.pkl", "hf": "hf", "coco-panoptic": "coco"}


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across fork/exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = Path(f"/proc/{parent}/task").iterdir()
            kids = [int(c) for t in tasks for c in (t / "children").read_text().split()]
        except OSError:
            continue
        found += kids
        todo += kids
    return found


def _pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _TreePeak:
    """The peak of the summed PSS of this process and its descendants, sampled."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.02):
            total = sum(_pss_mb(pid) for pid in [me, *_descendants(me)])
            self.peak = max(self.peak, total)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def _disk_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def run_one(fmt: str, project: Path, output: Path, jobs: int) -> None:
    """``ls-panoptic convert EXPORT --images DIR --label-config F --format FMT --jobs N``,
    timed."""
    from cli.convert import OutputFormat, run_convert
    from ls_panoptic.model import ConvertOptions

    tree = _TreePeak() if jobs > 1 else None
    start, cpu = time.perf_counter(), time.process_time()
    report, _labels = run_convert(
        str(project / "export.json"), output, project / "images", project / "config.xml",
        None, ConvertOptions(), strict=False, show_progress=False,
        output_format=OutputFormat(fmt), jobs=jobs,
    )  # fmt: skip
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    memory = tree.stop() if tree else _peak_rss_mb()
    assert report.written and not report.failures, report.failures
    result = {"seconds": seconds, "cpu": cpu, "rss_mb": memory, "disk_mb": _disk_mb(output)}
    print(json.dumps(result))


def _child(fmt: str, project: Path, output: Path, jobs: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--run", fmt, "--project", str(project),
               "--out", str(output), "--jobs", str(jobs)]  # fmt: skip
    proc = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _same_as_pickle(tmp: Path) -> dict[str, bool]:
    import numpy as np

    from ls_panoptic.reading import open_snapshot

    want = dict(open_snapshot(tmp / FORMATS["pickle"]).items())
    same = {}
    for fmt in ("hf", "coco-panoptic"):
        ok, seen = True, 0
        for key, entry in open_snapshot(tmp / FORMATS[fmt]).items():
            mine = want[key]
            seen += 1
            ok &= entry["panoptic_mask"].dtype == np.uint32
            ok &= entry["panoptic_mask"].tobytes() == mine["panoptic_mask"].tobytes()
            ok &= list(entry["inst2class"].items()) == list(mine["inst2class"].items())
        same[fmt] = bool(ok and seen == len(want))
    return same


def _compare(project: Path, tmp: Path, rounds: int, jobs: int) -> None:
    photos_mb = _disk_mb(project / "images")
    runs: dict[str, list[dict[str, float]]] = {fmt: [] for fmt in FORMATS}
    for _ in range(rounds):
        for fmt, name in FORMATS.items():
            runs[fmt].append(_child(fmt, project, tmp / name, jobs))
    med = {f: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for f, rs in runs.items()}
    base = med["pickle"]
    memory = "peak RSS MB" if jobs == 1 else "peak PSS MB"
    print(f"--jobs {jobs}")
    print(f"{'':15}{'convert s':>10}{'CPU s':>7}{memory:>13}{'disk MB':>10}"
          f"{'time x':>9}{'CPU x':>7}{'mem x':>8}{'smaller x':>11}")  # fmt: skip
    for fmt, m in med.items():
        print(
            f"{fmt:15}{m['seconds']:>10.2f}{m['cpu']:>7.2f}{m['rss_mb']:>13.0f}"
            f"{m['disk_mb']:>10.1f}{m['seconds'] / base['seconds']:>9.2f}"
            f"{m['cpu'] / base['cpu']:>7.2f}{m['rss_mb'] / base['rss_mb']:>8.2f}"
            f"{base['disk_mb'] / m['disk_mb']:>11.1f}"
        )
    if jobs > 1:
        print("(CPU s: this process only; the workers' CPU is not counted)")
    hf_masks = med["hf"]["disk_mb"] - photos_mb  # the photos are stored as they are
    print(
        f"the photos themselves: {photos_mb:.1f} MB (hf embeds them); hf without them: "
        f"{hf_masks:.1f} MB, {base['disk_mb'] / hf_masks:.0f}x smaller than the pickle; hf "
        f"{(base['disk_mb'] + photos_mb) / med['hf']['disk_mb']:.1f}x smaller than the "
        "pickle and the photos"
    )
    print(f"medians of {rounds} alternating rounds; convert s of each round: "
          + "; ".join(f"{f} " + ", ".join(f"{r['seconds']:.2f}" for r in rs)
                      for f, rs in runs.items()))  # fmt: skip
    print(f"read back with open_snapshot, equal to the pickle bit for bit: {_same_as_pickle(tmp)}")


def _textured(rng: Any, height: int, width: int) -> Any:
    """A photo-like RGB picture (see the module docstring), uint8 (height, width, 3)."""
    import cv2
    import numpy as np

    out = np.zeros((height, width, 3), np.float32)
    for scale, amp in ((64, 45.0), (16, 20.0), (4, 8.0)):  # smooth shading to fine texture
        small = rng.normal(0, 1, (max(2, height // scale), max(2, width // scale), 3))
        out += amp * cv2.resize(small.astype(np.float32), (width, height),
                                interpolation=cv2.INTER_CUBIC)  # fmt: skip
    out += np.array([70, 120, 60], np.float32)
    for _ in range(40):  # objects: sharp edges, each its own colour
        n = int(rng.integers(5, 10))
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.02, 0.12)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.4, 1.0, n) * r * min(height, width)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        shape = np.zeros((height, width), np.uint8)
        cv2.fillPoly(shape, [pts.astype(np.int32)], 1, cv2.LINE_AA)
        out[shape > 0] += rng.normal(0, 40, 3).astype(np.float32)
    out += rng.normal(0, 2.5, (height, width, 1)).astype(np.float32)  # sensor grain
    return np.clip(out, 0, 255).astype(np.uint8)


def _textured_photos(project: Path, seed: int = 0, upright: bool = False) -> None:
    """Replace the generator's photos by textured JPEGs of the same displayed size (image 0
    stays sideways with EXIF orientation 6 unless ``upright``); PNG names become .jpg in the
    export."""
    import numpy as np
    from PIL import Image, ImageOps

    rng = np.random.default_rng(seed)
    export = project / "export.json"
    text = export.read_text()
    for path in sorted((project / "images").iterdir()):
        with Image.open(path) as img:
            shown = ImageOps.exif_transpose(img)
            width, height = shown.size
            rotated = img.getexif().get(0x0112, 1) == 6 and not upright
        pixels = _textured(rng, height, width)
        target = path.with_suffix(".jpg")
        path.unlink()
        if rotated:
            exif = Image.Exif()
            exif[0x0112] = 6
            stored = Image.fromarray(np.ascontiguousarray(np.rot90(pixels, 1)))
            stored.save(target, format="JPEG", quality=92, exif=exif)
        else:
            Image.fromarray(pixels).save(target, format="JPEG", quality=92)
        text = text.replace(f'-{path.name}"', f'-{target.name}"')
    export.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT")
    parser.add_argument("--brush", type=int, default=20)
    parser.add_argument("--poly", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", choices=["textured", "noise"], default="textured")
    parser.add_argument(
        "--upright", action="store_true", help="no photo with an EXIF orientation (textured)"
    )
    parser.add_argument("--jobs", type=int, nargs="*", help="jobs to run (default: 1 and the CPUs)")
    parser.add_argument("--run", choices=list(FORMATS), help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.run:
        run_one(args.run, args.project, args.out, args.jobs[0])
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    from devstack.synthetic import make_project

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(f"generating {args.images} images {width}x{height}, {args.brush} brush + "
              f"{args.poly} polygon regions each ...", flush=True)  # fmt: skip
        project = make_project(
            tmp / "project", n_images=args.images, height=height, width=width,
            n_brush=args.brush, n_poly=args.poly, every_kind=False,
        )  # fmt: skip
        if args.photos == "textured":
            _textured_photos(project.export.parent, upright=args.upright)
        photos = sorted(project.images.iterdir())
        size = sum(p.stat().st_size for p in photos)
        print(f"photos: {args.photos}, {size / 2**20:.1f} MB, "
              f"{size / (len(photos) * width * height):.2f} bytes a pixel", flush=True)  # fmt: skip
        from ls_panoptic.batch_pool import default_jobs

        for jobs in args.jobs or sorted({1, default_jobs()}):
            _compare(project.export.parent, tmp, args.rounds, jobs)


if __name__ == "__main__":
    main()
