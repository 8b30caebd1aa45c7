"""Dataset descriptors: how datasets are discovered, accessed and mapped; the registry."""

from .descriptor import DatasetDescriptor, Signer
from .local import config_dir, local_registry_path
from .registry import (
    descriptors,
    find_descriptor,
    get_descriptor,
    register,
    register_local,
    registered,
    resolve_data_source,
    search,
    unregister,
    unregister_local,
)
from .signing import planetary_computer_signer

__all__ = [
    "DatasetDescriptor",
    "Signer",
    "config_dir",
    "descriptors",
    "find_descriptor",
    "get_descriptor",
    "local_registry_path",
    "planetary_computer_signer",
    "register",
    "register_local",
    "registered",
    "resolve_data_source",
    "search",
    "unregister",
    "unregister_local",
]
