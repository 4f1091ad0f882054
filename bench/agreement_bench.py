"""Agreement: PQ between 3 annotations of one 4000x3000 image with 50 segments each.

Three annotations of 49 rotated ellipses (labels leaf, stem, tomato) plus background, the second
and third jittered by a few pixels and percent as another annotator would draw them, are made as
Label Studio results and converted with the conversion ``convert`` uses
(``Conversion.of_annotation``). Timed after conversion: preparing the three masks
(``Segments.of``) and the three pairs' ``panoptic_quality``, i.e. everything ``agreement`` does
per task beyond converting. Baseline in the same run: a naive per-segment loop over pixels
(one ``mask_a == id`` scan and a gather of ``mask_b`` under it per segment), whose PQ is
checked equal to ours.

    python bench/agreement_bench.py [--repeat 7] [--size 4000x3000] [--segments 50]

No pass/fail: median and best times, and the ratio, go to stdout.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ls_panoptic.agreement import Segments, pairwise_quality
from ls_panoptic.convert import Conversion
from ls_panoptic.labels import labelset_from_labels
from ls_panoptic.model import ConvertOptions, Task
from ls_panoptic.pq import ClassCounts, average
from ls_panoptic.tasks import annotation_from_dict

LABELS = labelset_from_labels(["leaf", "stem", "tomato"])
STUFF = frozenset({LABELS.background_id})


def _ellipses(rng: np.random.Generator, count: int) -> list[tuple[float, ...]]:
    """``count`` ellipses: centre, radii (percent) and rotation (degrees)."""
    return [(rng.uniform(5, 95), rng.uniform(5, 95), rng.uniform(2, 8), rng.uniform(2, 8),
             rng.uniform(0, 180)) for _ in range(count)]  # fmt: skip


def _result(ellipses: list[tuple[float, ...]], size: tuple[int, int]) -> list[dict[str, Any]]:
    height, width = size
    return [
        {"id": f"e{n}", "type": "ellipselabels", "original_width": width,
         "original_height": height, "value": {"x": x, "y": y, "radiusX": rx, "radiusY": ry,
         "rotation": rot, "ellipselabels": [LABELS.labels[n % 3]]}}
        for n, (x, y, rx, ry, rot) in enumerate(ellipses)
    ]  # fmt: skip


def _jittered(
    rng: np.random.Generator, ellipses: list[tuple[float, ...]]
) -> list[tuple[float, ...]]:
    return [(x + rng.normal(0, 0.15), y + rng.normal(0, 0.15), rx * rng.uniform(0.94, 1.06),
             ry * rng.uniform(0.94, 1.06), rot + rng.normal(0, 3))
            for x, y, rx, ry, rot in ellipses]  # fmt: skip


def converted(
    size: tuple[int, int], segments: int
) -> list[tuple[npt.NDArray[Any], dict[int, int]]]:
    """Three annotations' masks and inst2class, as ``convert`` makes them."""
    rng = np.random.default_rng(12)
    base = _ellipses(rng, segments - 1)
    results = [_result(base, size), _result(_jittered(rng, base), size),
               _result(_jittered(rng, base), size)]  # fmt: skip
    task = Task(id=1, data={"image": "plant.jpg"})
    out = []
    for n, result in enumerate(results):
        annotation = annotation_from_dict({"id": n + 1, "result": result})
        entry = Conversion.of_annotation(task, annotation, ConvertOptions()).run(
            "plant.jpg", LABELS
        )
        out.append((entry.panoptic_mask, entry.inst2class))
    return out


def ours(masks: list[tuple[npt.NDArray[Any], dict[int, int]]]) -> list[float]:
    prepared = [Segments.of(mask, inst2class) for mask, inst2class in masks]
    pairs = list(itertools.combinations(range(len(prepared)), 2))
    return [q.overall.pq for q in pairwise_quality(prepared, pairs, STUFF)]


def _naive_pair(
    a: npt.NDArray[Any], ca: dict[int, int], b: npt.NDArray[Any], cb: dict[int, int]
) -> float:
    """PQ the textbook way: one pass over the pixels per segment of ``a`` (no void here)."""
    area_b = {j: int((b == j).sum()) for j in cb}
    counts = {c: ClassCounts(c) for c in {*ca.values(), *cb.values()}}
    matched_b: set[int] = set()
    for i, class_id in ca.items():
        inside = a == i
        area_a = int(inside.sum())
        under = np.bincount(b[inside], minlength=max(cb) + 1)
        match = None
        for j in np.flatnonzero(under):
            j = int(j)
            iou = under[j] / (area_a + area_b[j] - under[j])
            if cb[j] == class_id and iou > 0.5:
                match = (j, float(iou))
        if match is None:
            counts[class_id] += ClassCounts(class_id, fp=1)
        else:
            matched_b.add(match[0])
            counts[class_id] += ClassCounts(class_id, tp=1, iou_sum=match[1])
    for j, class_id in cb.items():
        if j not in matched_b:
            counts[class_id] += ClassCounts(class_id, fn=1)
    quality = average(counts.values())
    return 0.0 if quality is None else quality.pq


def naive(masks: list[tuple[npt.NDArray[Any], dict[int, int]]]) -> list[float]:
    return [_naive_pair(*a, *b) for a, b in itertools.combinations(masks, 2)]


def _time(fn: Callable[[], list[float]], repeat: int) -> tuple[list[float], list[float]]:
    times, result = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--size", default="4000x3000", help="width x height")
    parser.add_argument("--segments", type=int, default=50)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    started = time.perf_counter()
    masks = converted((height, width), args.segments)
    conversion = (time.perf_counter() - started) * 1000
    counts = [len(inst2class) for _mask, inst2class in masks]
    print(f"3 annotations of {width}x{height}, segments {counts}; converted in {conversion:.0f} ms")
    fast, pq = _time(lambda: ours(masks), args.repeat)
    slow, pq_naive = _time(lambda: naive(masks), max(1, args.repeat // 3))
    if not np.allclose(pq, pq_naive, rtol=0, atol=1e-12):
        raise SystemExit(f"the naive PQ differs: {pq_naive} vs {pq}")
    print(f"pair PQ: {', '.join(f'{v:.4f}' for v in pq)}")
    for name, times in (("ours (joint histogram)", fast), ("naive per-segment loop", slow)):
        print(f"{name:24} median {statistics.median(times):8.1f} ms   best {min(times):8.1f} ms"
              f"   ({len(times)} runs, 3 pairs)")  # fmt: skip
    print(
        f"ratio of medians (naive / ours): {statistics.median(slow) / statistics.median(fast):.1f}x"
    )


if __name__ == "__main__":
    main()
