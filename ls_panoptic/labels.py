"""Class ids: ``id2label`` from a Label Studio label config or a user mapping file.

Decisions (also the user-visible rules):

- Controls whose labels count: ``BrushLabels``, ``BitmaskLabels``, ``PolygonLabels``,
  ``RectangleLabels``, ``EllipseLabels`` and the generic ``Labels``, attached (``toName``) to the
  image. ``KeyPointLabels``, ``Choices`` and other controls paint no area and are ignored.
- A ``<Label>`` is named by its ``alias`` when it has one, else by its ``value``: that is the string
  Label Studio writes into results.
- Labels keep their order of first appearance, de-duplicated across controls.
- The background class is the label spelled ``background`` in any letter case (``Background``,
  ``BACKGROUND``); its name is kept as written. Without one, ``background`` is appended as the last
  id. Two spellings of background in one label set is an error.
- Tag names are matched case-insensitively, as Label Studio does.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ls_panoptic.errors import LabelConfigError

__all__ = [
    "BACKGROUND",
    "LABEL_CONTROLS",
    "LabelSet",
    "labelset_from_config",
    "labelset_from_labels",
    "labelset_from_mapping",
    "load_mapping_file",
]

BACKGROUND = "background"
#: Label controls (lower case) whose labels paint areas of an image.
LABEL_CONTROLS = frozenset(
    {"brushlabels", "bitmasklabels", "polygonlabels", "rectanglelabels", "ellipselabels", "labels"}
)


@dataclass(frozen=True)
class LabelSet:
    """The class ids of a project.

    Attributes:
        id2label: ``{class_id: label}``, background included; ids are non-negative.
        background_id: the id of the background class.
        image_name: the ``name`` of the ``<Image>`` the controls attach to (``None``: unknown).
        image_value: the task data key of that image (``"image"`` for ``value="$image"``).
    """

    id2label: dict[int, str]
    background_id: int
    image_name: str | None = None
    image_value: str | None = None
    _label2id: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.id2label.get(self.background_id) is None:
            raise LabelConfigError(f"background id {self.background_id} is not in id2label")
        label2id = {label: class_id for class_id, label in sorted(self.id2label.items())}
        if len(label2id) != len(self.id2label):
            raise LabelConfigError("id2label maps two ids to the same label")
        object.__setattr__(self, "_label2id", label2id)

    def class_id(self, label: str) -> int | None:
        """The class id of ``label`` (exact match), ``None`` when it is not in the set."""
        return self._label2id.get(label)

    @property
    def labels(self) -> list[str]:
        """The labels in class-id order."""
        return [self.id2label[i] for i in sorted(self.id2label)]


def _is_background(label: str) -> bool:
    return label.lower() == BACKGROUND


def _with_background(id2label: dict[int, str], **where: str | None) -> LabelSet:
    """Find the background class in ``id2label``, or append it after the highest id."""
    found = [i for i, label in id2label.items() if _is_background(label)]
    if len(found) > 1:
        spelled = ", ".join(repr(id2label[i]) for i in sorted(found))
        raise LabelConfigError(
            f"the label set has several background labels ({spelled}); keep only one"
        )
    if found:
        return LabelSet(dict(id2label), found[0], **where)
    background_id = max(id2label, default=-1) + 1
    return LabelSet({**id2label, background_id: BACKGROUND}, background_id, **where)


def labelset_from_labels(labels: Iterable[str]) -> LabelSet:
    """Label set from bare label names: sorted, de-duplicated, background always the last id."""
    names = sorted({label for label in labels if not _is_background(label)})
    return _with_background(dict(enumerate(names)))


def labelset_from_config(xml: str, image_name: str | None = None) -> LabelSet:
    """Label set from a Label Studio label config (the project's ``label_config`` XML).

    Args:
        xml: the label config.
        image_name: the ``name`` of the ``<Image>`` tag to use. Needed only when several images
            carry label controls; otherwise the only such image is used.

    Raises:
        LabelConfigError: malformed XML, no (or no such) ``<Image>``, several candidate images and
            no ``image_name``, or no labels attached to the image.
    """
    root = _parse_xml(xml)
    image = _pick_image(root, image_name)
    name = _attr(image, "name") or ""
    labels: list[str] = []
    for control in root.iter():
        if _tag(control) in LABEL_CONTROLS and name in _to_names(control):
            labels.extend(_label_names(control))
    if not labels:
        raise LabelConfigError(
            f"the label config has no <Label> under a BrushLabels, BitmaskLabels, PolygonLabels, "
            f"RectangleLabels, EllipseLabels or Labels control with toName={name!r}; add labels "
            "there, or pass an id2label mapping file (needed for labels loaded from task data)"
        )
    unique = list(dict.fromkeys(labels))
    value = _attr(image, "value") or _attr(image, "valueList") or ""
    return _with_background(
        dict(enumerate(unique)),
        image_name=name,
        image_value=value[1:] if value.startswith("$") and len(value) > 1 else None,
    )


def _parse_xml(xml: str) -> ET.Element:
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        line, column = exc.position
        raise LabelConfigError(
            f"the label config is not well-formed XML at line {line}, column {column + 1}: "
            f"{exc.msg}; fix it in the project's Labeling Interface settings"
        ) from None


def _pick_image(root: ET.Element, image_name: str | None) -> ET.Element:
    """The ``<Image>`` element the label set belongs to."""
    images = [el for el in root.iter() if _tag(el) == "image"]
    names = [_attr(el, "name") or "" for el in images]
    if not images:
        raise LabelConfigError("the label config has no <Image> tag: ls-panoptic converts images")
    if image_name is not None:
        if image_name not in names:
            raise LabelConfigError(
                f"the label config has no <Image name={image_name!r}>; its images: "
                + ", ".join(repr(n) for n in names)
            )
        return images[names.index(image_name)]
    if len(images) == 1:
        return images[0]
    targets = {n for el in root.iter() if _tag(el) in LABEL_CONTROLS for n in _to_names(el)}
    labelled = [el for el, n in zip(images, names, strict=True) if n in targets]
    if len(labelled) == 1:
        return labelled[0]
    raise LabelConfigError(
        "the label config has several <Image> tags ("
        + ", ".join(repr(n) for n in names)
        + "); pick one with the image name option"
    )


def _label_names(control: ET.Element) -> list[str]:
    """The result strings of a control's ``<Label>`` children: alias if set, else value."""
    names = []
    for label in control.iter():
        if _tag(label) == "label":
            name = _attr(label, "alias") or _attr(label, "value")
            if name:
                names.append(name)
    return names


def _tag(element: ET.Element) -> str:
    return element.tag.lower() if isinstance(element.tag, str) else ""


def _attr(element: ET.Element, name: str) -> str | None:
    """Attribute lookup that tolerates letter case (``toName`` / ``toname``)."""
    if name in element.attrib:
        return element.attrib[name]
    wanted = name.lower()
    return next((v for k, v in element.attrib.items() if k.lower() == wanted), None)


def _to_names(control: ET.Element) -> list[str]:
    return [n.strip() for n in (_attr(control, "toName") or "").split(",") if n.strip()]


def labelset_from_mapping(mapping: Mapping[Any, Any] | Sequence[Any]) -> LabelSet:
    """Label set from a user mapping that pins class ids.

    Accepts ``{"0": "wall", ...}``, ``{0: "wall", ...}``, ``["wall", ...]`` (ids by position) and
    a Hugging Face ``config.json``-like ``{"id2label": {...}, ...}``. Ids must be non-negative
    integers (gaps allowed), labels non-empty and unique. Without a background label,
    ``background`` gets the id after the highest one.

    Raises:
        LabelConfigError: naming the offending entry.
    """
    if isinstance(mapping, Mapping) and isinstance(mapping.get("id2label"), Mapping):
        mapping = mapping["id2label"]
    if isinstance(mapping, (str, bytes)) or not isinstance(mapping, (Mapping, Sequence)):
        raise LabelConfigError(
            'an id2label mapping must be a JSON object {"0": "label", ...} or a list of labels'
        )
    pairs = mapping.items() if isinstance(mapping, Mapping) else enumerate(mapping)
    id2label: dict[int, str] = {}
    seen: dict[str, int] = {}
    for raw_id, label in pairs:
        class_id = _class_id(raw_id)
        if not isinstance(label, str) or not label:
            raise LabelConfigError(f"id2label: id {raw_id!r} has no label name (got {label!r})")
        if class_id in id2label:
            raise LabelConfigError(f"id2label: id {class_id} appears twice")
        if label in seen:
            raise LabelConfigError(
                f"id2label: label {label!r} has two ids ({seen[label]} and {class_id})"
            )
        id2label[class_id] = label
        seen[label] = class_id
    if not id2label:
        raise LabelConfigError("id2label: the mapping is empty")
    return _with_background(id2label)


def _class_id(raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str) and raw.strip().isdigit() and raw.strip().isascii():
        return int(raw.strip())
    raise LabelConfigError(f"id2label: id {raw!r} is not a non-negative integer")


def load_mapping_file(path: str | Path) -> LabelSet:
    """Label set from a JSON id2label file (see :func:`labelset_from_mapping`).

    Duplicate keys in the JSON object are an error, not silently the last one.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelConfigError(f"cannot read id2label file {path}: {exc}") from None
    try:
        return labelset_from_mapping(json.loads(text, object_pairs_hook=_no_duplicate_keys))
    except json.JSONDecodeError as exc:
        raise LabelConfigError(
            f"id2label file {path} is not valid JSON at line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}"
        ) from None
    except LabelConfigError as exc:
        raise LabelConfigError(f"id2label file {path}: {exc}") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    counts = Counter(key for key, _ in pairs)
    duplicated = sorted(key for key, count in counts.items() if count > 1)
    if duplicated:
        raise LabelConfigError(f"key(s) {', '.join(map(repr, duplicated))} appear twice")
    return dict(pairs)
