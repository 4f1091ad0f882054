"""ls-panoptic core: Label Studio segmentation results -> panoptic masks for Mask2Former.

Pure conversion (numpy, Pillow, OpenCV): no Flask, Redis, HTTP or environment variables.

>>> from ls_panoptic import read_export, labelset_from_config, convert_tasks, ConvertOptions
>>> tasks, _format = read_export(Path("export.json"))                       # doctest: +SKIP
>>> labels = labelset_from_config(Path("config.xml").read_text())           # doctest: +SKIP
>>> convert_tasks(tasks, Path("gt.pkl"), labels, ConvertOptions())          # doctest: +SKIP
>>> entries = open_snapshot("gt.pkl").items()   # lazily; or hf / coco  # doctest: +SKIP
"""

from .batch import BatchReport, convert_tasks
from .convert import convert_task
from .errors import ImageError, PanopticError, RegionError
from .export import parse_export, read_export
from .labels import LabelSet, labelset_from_config, labelset_from_labels, load_mapping_file
from .model import ConvertOptions, Entry, Task
from .reading import Snapshot, open_snapshot
from .snapshot import SnapshotWriter, write_snapshot

__all__ = [
    "BatchReport",
    "ConvertOptions",
    "Entry",
    "ImageError",
    "LabelSet",
    "PanopticError",
    "RegionError",
    "Snapshot",
    "SnapshotWriter",
    "Task",
    "convert_task",
    "convert_tasks",
    "labelset_from_config",
    "labelset_from_labels",
    "load_mapping_file",
    "open_snapshot",
    "parse_export",
    "read_export",
    "write_snapshot",
]
