"""Dataset descriptors: how datasets are discovered, accessed and mapped; the registry."""

from .descriptor import DatasetDescriptor, Signer
from .registry import (
    descriptors,
    find_descriptor,
    get_descriptor,
    register,
    resolve_data_source,
    unregister,
)
from .signing import planetary_computer_signer

__all__ = [
    "DatasetDescriptor",
    "Signer",
    "descriptors",
    "find_descriptor",
    "get_descriptor",
    "planetary_computer_signer",
    "register",
    "resolve_data_source",
    "unregister",
]
