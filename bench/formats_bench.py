"""Output formats: ``convert --format hf`` and ``coco-panoptic`` against the pickle, in one run.

Each format converts the same synthetic Label Studio export (default: 8 images of 4000x3000,
20 anti-aliased brush regions + 10 polygons each) in its own fresh process, so that each peak
RSS is its own, in alternating rounds. Then every output is read back with ``open_snapshot``
and compared with the pickle, bit for bit.

    python bench/formats_bench.py [--images 8] [--size 4000x3000] [--rounds 3]

Prints, per format, the median convert time, peak RSS and size on disk, and each as a ratio
to the pickle's (targets: time <= 2x, disk >= 20x smaller, peak RSS <= 1.5x). No pass/fail.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORMATS = {"pickle": "gt.pkl", "hf": "hf", "coco-panoptic": "coco"}


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across fork/exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _disk_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def run_one(fmt: str, project: Path, output: Path) -> None:
    """``ls-panoptic convert EXPORT --images DIR --label-config F --format FMT``, timed."""
    from cli.convert import OutputFormat, run_convert
    from ls_panoptic.model import ConvertOptions

    start = time.perf_counter()
    report, _labels = run_convert(
        str(project / "export.json"), output, project / "images", project / "config.xml",
        None, ConvertOptions(), strict=False, show_progress=False,
        output_format=OutputFormat(fmt),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert report.written and not report.failures, report.failures
    print(json.dumps({"seconds": seconds, "rss_mb": _peak_rss_mb(), "disk_mb": _disk_mb(output)}))


def _child(fmt: str, project: Path, output: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--run", fmt, "--project", str(project),
               "--out", str(output)]  # fmt: skip
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


def _compare(project: Path, tmp: Path, rounds: int) -> None:
    photos_mb = _disk_mb(project / "images")
    runs: dict[str, list[dict[str, float]]] = {fmt: [] for fmt in FORMATS}
    for _ in range(rounds):
        for fmt, name in FORMATS.items():
            runs[fmt].append(_child(fmt, project, tmp / name))
    med = {f: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for f, rs in runs.items()}
    base = med["pickle"]
    print(f"{'':15}{'convert s':>10}{'peak RSS MB':>13}{'disk MB':>10}"
          f"{'time x':>9}{'RSS x':>8}{'smaller x':>11}")  # fmt: skip
    for fmt, m in med.items():
        print(
            f"{fmt:15}{m['seconds']:>10.2f}{m['rss_mb']:>13.0f}{m['disk_mb']:>10.1f}"
            f"{m['seconds'] / base['seconds']:>9.2f}{m['rss_mb'] / base['rss_mb']:>8.2f}"
            f"{base['disk_mb'] / m['disk_mb']:>11.1f}"
        )
    hf_masks = med["hf"]["disk_mb"] - photos_mb  # the photos are stored as they are
    smaller = base["disk_mb"] / hf_masks
    print(
        f"the photos themselves: {photos_mb:.1f} MB (hf embeds them unchanged); hf without "
        f"them: {hf_masks:.1f} MB, {smaller:.0f}x smaller than the pickle"
    )
    print(f"medians of {rounds} alternating rounds; convert s of each round: "
          + "; ".join(f"{f} " + ", ".join(f"{r['seconds']:.2f}" for r in rs)
                      for f, rs in runs.items()))  # fmt: skip
    print(f"read back with open_snapshot, equal to the pickle bit for bit: {_same_as_pickle(tmp)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT")
    parser.add_argument("--brush", type=int, default=20)
    parser.add_argument("--poly", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run", choices=list(FORMATS), help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.run:
        run_one(args.run, args.project, args.out)
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
        _compare(project.export.parent, tmp, args.rounds)


if __name__ == "__main__":
    main()
