"""Batch conversion: ls-panoptic against the naive script a user would write, in one run.

Both sides convert the same synthetic Label Studio export (default: 8 images of 4000x3000,
20 anti-aliased brush regions + 10 polygons each) in their own fresh process, so that each
peak RSS is its own. The baseline is what people write today: label-studio-sdk ``decode_rle``
per brush region, PIL for polygons, boolean-index painting, one dict, one ``pickle.dump``.

    python bench/convert_bench.py [--images 8] [--size 4000x3000] [--brush 20] [--poly 10]

Prints both wall times, the speed-up, both peak RSS figures and their ratio. No pass/fail.
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across fork/exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def import_baseline() -> None:
    """What the baseline script imports before it starts converting."""
    import numpy  # noqa: F401
    from label_studio_sdk.converter import brush  # noqa: F401
    from PIL import Image, ImageDraw  # noqa: F401


def import_project() -> None:
    """What `ls-panoptic convert` imports before it starts converting."""
    from cli import convert  # noqa: F401


def run_baseline(project: Path, output: Path) -> None:
    """The naive conversion (kept deliberately plain: this is the yardstick)."""
    import numpy as np
    from label_studio_sdk.converter.brush import decode_rle
    from PIL import Image, ImageDraw

    tasks = json.loads((project / "export.json").read_text())
    labels = ["leaf", "stem", "tomato", "background"]
    out: dict[str, Any] = {}
    for task in tasks:
        usable = [a for a in task["annotations"] if not a["was_cancelled"]]
        annotation = max(usable, key=lambda a: a["updated_at"])
        first = annotation["result"][0]
        h, w = first["original_height"], first["original_width"]
        mask = np.zeros((h, w), dtype=np.uint32)
        inst2class = {}
        for n, item in enumerate(annotation["result"], start=1):
            value = item["value"]
            if item["type"] == "brushlabels":
                region = decode_rle(value["rle"]).reshape(h, w, 4)[:, :, 3] >= 128
            else:
                canvas = Image.new("L", (w, h), 0)
                pts = [(x * w / 100, y * h / 100) for x, y in value["points"]]
                ImageDraw.Draw(canvas).polygon(pts, fill=1)
                region = np.array(canvas, dtype=bool)
            mask[region] = n
            inst2class[n] = labels.index(value[item["type"]][0])
        background = len(annotation["result"]) + 1
        mask[mask == 0] = background
        inst2class[background] = labels.index("background")
        out[task["data"]["image"].rsplit("-", 1)[-1]] = {
            "panoptic_mask": mask,
            "inst2class": inst2class,
        }
    with output.open("wb") as file:
        pickle.dump(out, file, protocol=pickle.HIGHEST_PROTOCOL)


def run_project(project: Path, output: Path) -> None:
    """ls-panoptic, exactly as `ls-panoptic convert EXPORT --images DIR --label-config F`."""
    from cli.convert import run_convert
    from ls_panoptic.model import ConvertOptions

    run_convert(
        str(project / "export.json"),
        output,
        project / "images",
        project / "config.xml",
        None,
        ConvertOptions(),
        strict=False,
        show_progress=False,
    )


def _child(side: str, project: Path, output: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--run", side, "--project", str(project), "--out", str(output)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _class_agreement(mine: dict[str, Any], theirs: dict[str, Any]) -> float:
    """Lowest per-image share of pixels whose class both conversions agree on."""
    import numpy as np

    worst = 1.0
    for key, entry in theirs.items():
        ours = mine[key]
        classes = []
        for e in (ours, entry):
            lut = np.full(int(e["panoptic_mask"].max()) + 1, -1, dtype=np.int64)
            lut[list(e["inst2class"])] = list(e["inst2class"].values())
            classes.append(lut[e["panoptic_mask"]])
        worst = min(worst, float((classes[0] == classes[1]).mean()))
    return worst


def _compare(project: Path, tmp: Path) -> None:
    ours = _child("project", project, tmp / "ours.pkl")
    base = _child("baseline", project, tmp / "base.pkl")
    with (tmp / "ours.pkl").open("rb") as a, (tmp / "base.pkl").open("rb") as b:
        mine, theirs = pickle.load(a), pickle.load(b)
    n = len(theirs)
    print(f"{'':16}{'convert s':>10}{'per image ms':>14}{'imports s':>11}{'peak RSS MB':>13}")
    for name, side in (("naive baseline", base), ("ls-panoptic", ours)):
        print(
            f"{name:16}{side['seconds']:>10.2f}{1000 * side['seconds'] / n:>14.0f}"
            f"{side['imports']:>11.2f}{side['rss_mb']:>13.0f}"
        )
    total = (base["seconds"] + base["imports"]) / (ours["seconds"] + ours["imports"])
    print(
        f"speed-up: {base['seconds'] / ours['seconds']:.1f}x converting, "
        f"{total:.1f}x including imports; "
        f"peak RSS: {100 * ours['rss_mb'] / base['rss_mb']:.0f}% of the baseline's"
    )
    print(
        f"same images: {sorted(mine) == sorted(theirs)}; class agreement with the baseline "
        f"(worst image): {100 * _class_agreement(mine, theirs):.2f}% of pixels "
        "(the baseline's PIL polygons also take boundary pixels)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT")
    parser.add_argument("--brush", type=int, default=20)
    parser.add_argument("--poly", type=int, default=10)
    parser.add_argument("--run", choices=["baseline", "project"], help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        sys.path.insert(0, str(REPO))
        start = time.perf_counter()
        (import_baseline if args.run == "baseline" else import_project)()
        imported = time.perf_counter()
        (run_baseline if args.run == "baseline" else run_project)(args.project, args.out)
        done = time.perf_counter()
        print(
            json.dumps(
                {"seconds": done - imported, "imports": imported - start, "rss_mb": _peak_rss_mb()}
            )
        )
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    sys.path.insert(0, str(REPO))
    from devstack.synthetic import make_project

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(
            f"generating {args.images} images {width}x{height}, {args.brush} brush + "
            f"{args.poly} polygon regions each ...",
            flush=True,
        )
        project = make_project(
            tmp / "project",
            n_images=args.images,
            height=height,
            width=width,
            n_brush=args.brush,
            n_poly=args.poly,
            every_kind=False,
        )
        _compare(project.export.parent, tmp)


if __name__ == "__main__":
    main()
