"""Brush RLE decoding: ls_panoptic.rle.decode_runs against label-studio-sdk and the Rust package.

Synthetic, seeded Label Studio brush masks (anti-aliased strokes and ellipses drawn with cv2
LINE_AA, alpha copied into RGB, encoded with label-studio-sdk ``encode_rle``) at each size:

    regions  --masks masks of 1 to 3 strokes: one brush region each, as annotators draw them
    busy     --busy masks of 20 strokes: many edges, so many records (the hard case for us)

Every decoder gets the RLE as the list of ints that Label Studio's JSON holds. Ours returns the
runs of pixels with alpha >= 128: ``decode_runs`` as installed (the C record walk
ls_panoptic._rlewalk where it was built, else numpy; the row names which) and, when that is the C
walk, the numpy walk it falls back to (``decode_runs_numpy``) in a row of its own.
label-studio-sdk ``decode_rle`` and ``label_studio_brush_rle_rs.decode_rle(rle, print_params)``
(skipped when not installed) return the flat RGBA buffer. Decoders take turns mask by mask; the
table gives the median and 90th percentile time per mask, and ratios of medians (above 1: ours is
faster).

    python bench/rle_bench.py [--repeat 15] [--masks 20] [--busy 4] [--sizes 1920x1080,4000x3000]

No pass/fail: results go to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from label_studio_sdk.converter.brush import decode_rle, encode_rle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ls_panoptic.rle import DECODER, decode_runs, decode_runs_numpy

Alpha = npt.NDArray[np.uint8]
Decoder = Callable[[list[int], int, int], Any]
OURS, SDK, RUST = f"ours decode_runs ({DECODER})", "label-studio-sdk decode_rle", "Rust decode_rle"
NUMPY = "ours, numpy fallback"


def brush_mask(rng: np.random.Generator, height: int, width: int, strokes: int) -> Alpha:
    """uint8 (height, width) alpha: ``strokes`` anti-aliased brush strokes or filled ellipses."""
    alpha = np.zeros((height, width), dtype=np.uint8)
    scale = min(height, width)
    for _ in range(strokes):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.4:
            axes = (
                int(rng.integers(scale // 40, scale // 6)),
                int(rng.integers(scale // 40, scale // 6)),
            )
            cv2.ellipse(
                alpha, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA
            )
        else:
            steps = rng.normal(0, scale / 12, (int(rng.integers(3, 8)), 2))
            points = (np.cumsum(steps, axis=0) + centre).astype(np.int32)
            thickness = int(rng.integers(scale // 100 + 2, scale // 25))
            cv2.polylines(alpha, [points], False, 255, thickness, cv2.LINE_AA)
    return alpha


def ls_rle(alpha: Alpha) -> list[int]:
    """Label Studio's encoding: RGBA with R = G = B = A, as a JSON list of ints."""
    return [int(b) for b in encode_rle(np.repeat(alpha.reshape(-1), 4))]  # type: ignore[no-untyped-call]


def rust_module() -> ModuleType | None:
    """``label_studio_brush_rle_rs`` if installed. Its ``decode_rle(rle, print_params)`` returns
    the flat uint8 RGBA buffer, like the SDK's."""
    try:
        return importlib.import_module("label_studio_brush_rle_rs")
    except ImportError:
        return None


def decoders() -> dict[str, Decoder]:
    """Name -> decode(rle, height, width)."""
    found: dict[str, Decoder] = {OURS: lambda rle, h, w: decode_runs(rle, h, w, 128)}
    if DECODER != "numpy":  # else OURS is this already
        found[NUMPY] = lambda rle, h, w: decode_runs_numpy(rle, h, w, 128)
    found[SDK] = lambda rle, h, w: decode_rle(rle)
    rust = rust_module()
    if rust is not None:
        found[RUST] = lambda rle, h, w: rust.decode_rle(rle, False)
        found["  Rust, then alpha >= 128 (for scale)"] = lambda rle, h, w: (
            rust.decode_rle(rle, False).reshape(h, w, 4)[:, :, 3] >= 128
        )
    return found


def check(rle: list[int], alpha: Alpha) -> None:
    """Ours (both walks) must give exactly alpha >= 128 (the SDK's encoder round-trips alpha)."""
    height, width = alpha.shape
    for decode in (decode_runs, decode_runs_numpy):
        starts, stops = decode(rle, height, width)
        mask = np.zeros(height * width, dtype=bool)
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            mask[start:stop] = True
        if not np.array_equal(mask, alpha.reshape(-1) >= 128):
            raise SystemExit(f"{decode.__name__} disagrees with the encoded mask")


def measure(
    rles: list[list[int]], shape: tuple[int, int], repeat: int, sdk_repeat: int
) -> dict[str, list[float]]:
    """Seconds per decode, per decoder; the SDK only in the first ``sdk_repeat`` rounds."""
    chosen = decoders()
    times: dict[str, list[float]] = {name: [] for name in chosen}
    for round_ in range(repeat):
        for rle in rles:
            for name, decode in chosen.items():
                if name == SDK and round_ >= sdk_repeat:
                    continue
                start = time.perf_counter()
                decode(rle, *shape)
                times[name].append(time.perf_counter() - start)
    return times


def report(label: str, rles: list[list[int]], times: dict[str, list[float]]) -> None:
    median = {name: float(np.median(t)) for name, t in times.items()}
    sdk, rust = median.get(SDK), median.get(RUST)
    size = np.mean([len(r) for r in rles]) / 1024
    print(f"\n{label} (RLE {size:.1f} KiB on average)")
    print(f"  {'decoder':40}{'median ms':>11}{'p90 ms':>9}{'SDK / it':>10}{'Rust / it':>11}")
    for name, t in times.items():
        vs_sdk = f"{sdk / median[name]:.1f}x" if sdk else "-"
        vs_rust = f"{rust / median[name]:.2f}x" if rust else "-"
        p90 = float(np.percentile(t, 90))
        print(f"  {name:40}{median[name] * 1e3:>11.3f}{p90 * 1e3:>9.3f}{vs_sdk:>10}{vs_rust:>11}")


def run_case(label: str, masks: list[Alpha], repeat: int, sdk_repeat: int) -> None:
    rles = [ls_rle(alpha) for alpha in masks]
    for rle, alpha in zip(rles, masks, strict=True):
        check(rle, alpha)
    height, width = masks[0].shape
    report(label, rles, measure(rles, (height, width), repeat, sdk_repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="decodes of every mask per decoder")
    parser.add_argument("--sdk-repeat", type=int, default=2, help="the SDK's (it is slow)")
    parser.add_argument("--masks", type=int, default=20, help="1-3 stroke masks per size")
    parser.add_argument("--busy", type=int, default=4, help="20-stroke masks per size")
    parser.add_argument("--sizes", default="1920x1080,4000x3000", help="WIDTHxHEIGHT,...")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    if rust_module() is None:
        print("label_studio_brush_rle_rs is not installed: no Rust rows")
    rng = np.random.default_rng(args.seed)
    sdk_repeat = min(args.sdk_repeat, args.repeat)
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        print(f"\nencoding {args.masks} + {args.busy} masks of {width}x{height} ...", flush=True)
        regions = [
            brush_mask(rng, height, width, int(rng.integers(1, 4))) for _ in range(args.masks)
        ]
        busy = [brush_mask(rng, height, width, 20) for _ in range(args.busy)]
        run_case(
            f"{width}x{height}, {len(regions)} masks of 1-3 strokes",
            regions,
            args.repeat,
            sdk_repeat,
        )
        if busy:
            run_case(
                f"{width}x{height}, {len(busy)} masks of 20 strokes", busy, args.repeat, sdk_repeat
            )


if __name__ == "__main__":
    main()
