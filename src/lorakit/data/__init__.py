"""Data: reading records from files, splitting, and batching."""

from lorakit.data.readers import read_records, require_field
from lorakit.data.splits import Splits, load_splits

__all__ = ["Splits", "load_splits", "read_records", "require_field"]
