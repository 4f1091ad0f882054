"""Types of the C extension ls_panoptic._rlewalk (source: _rlewalk.c)."""

def runs(
    data: object, height: int, width: int, threshold: int, /
) -> tuple[bytearray, bytearray] | None: ...
