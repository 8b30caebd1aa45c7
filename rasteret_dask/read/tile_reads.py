"""Where one decoded tile goes: its payload in a fetch group, cropped and placed (pure value)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TileRead"]


@dataclass(frozen=True, slots=True)
class TileRead:
    """Copy tile ``payload`` (index into its fetch group) [src] into the chunk [dst]."""

    payload: int
    src: tuple[int, int, int, int]
    dst: tuple[int, int, int, int]
