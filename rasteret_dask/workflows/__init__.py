"""Batch workflows that are also importable functions: re-enrichment, composites, chips."""

from .chips import ChipsReport, export_chips
from .composite import CompositeReport, composite
from .reenrich import ReenrichReport, reenrich

__all__ = ["composite", "CompositeReport", "export_chips", "ChipsReport", "reenrich",
           "ReenrichReport"]
