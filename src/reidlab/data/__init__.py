"""Datasets, image records, decoding and loading."""

from reidlab.data.datasets import (
    DatasetFormatError,
    DatasetLayoutError,
    combine_train,
    dataset_info,
    format_info_table,
    load_dataset,
)
from reidlab.data.loader import ImageDataset, ImageDecodeError, decode_image
from reidlab.data.records import ImageRecord, ReIDDataset, split_stats

__all__ = [
    "DatasetFormatError",
    "DatasetLayoutError",
    "ImageDataset",
    "ImageDecodeError",
    "ImageRecord",
    "ReIDDataset",
    "combine_train",
    "dataset_info",
    "decode_image",
    "format_info_table",
    "load_dataset",
    "split_stats",
]
