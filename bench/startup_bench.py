"""CLI start-up: `ls-panoptic` commands against a bare `import numpy, PIL.Image`, in one run.

Each command runs as a fresh process, exactly as a user types it (the console script beside
this interpreter), N times; the rounds interleave the commands so that a busy machine slows
them all alike. The baseline is the interpreter importing only what any conversion needs.

    python bench/startup_bench.py [--runs 11] [--images 4] [--size 640x480]

Prints each command's median wall time and its ratio to the baseline's median. No pass/fail
(tests/cli/test_startup.py checks what each command imports, which is what these times follow).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _commands(project: Path, output: Path) -> dict[str, list[str]]:
    script = str(Path(sys.executable).with_name("ls-panoptic"))
    convert = [
        script, "convert", str(project / "export.json"), "--images", str(project / "images"),
        "--label-config", str(project / "config.xml"), "--output", str(output), "--quiet",
    ]  # fmt: skip
    return {
        'python -c "import numpy, PIL.Image"': [sys.executable, "-c", "import numpy, PIL.Image"],
        "ls-panoptic --version": [script, "--version"],
        "ls-panoptic --help": [script, "--help"],
        "ls-panoptic convert --help": [script, "convert", "--help"],
        "ls-panoptic convert (the export)": convert,
    }


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median wall seconds of each command over ``runs`` interleaved rounds (after a warm-up)."""
    for argv in commands.values():
        _timed(argv)  # page cache and .pyc files warm, as for a user's second run
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(_timed(argv))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--images", type=int, default=4, help="images in the converted export")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of its images")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    sys.path.insert(0, str(REPO))
    from devstack.synthetic import make_project

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_project(tmp / "project", n_images=args.images, height=height, width=width)
        medians = measure(_commands(tmp / "project", tmp / "gt.pkl"), args.runs)
    baseline = next(iter(medians.values()))
    print(f"medians of {args.runs} runs; convert: {args.images} images of {width}x{height}")
    print(f"{'command':<36}{'median s':>10}{'x baseline':>12}")
    for name, seconds in medians.items():
        print(f"{name:<36}{seconds:>10.3f}{seconds / baseline:>12.2f}")


if __name__ == "__main__":
    main()
