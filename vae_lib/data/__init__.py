"""The data layer: every dataset comes through :func:`load_dataset` as an :class:`ImageData`.

Modules: ``load`` (the entry point), ``torchvision_sets`` (MNIST / Fashion-MNIST found offline),
``synthetic_digits`` and ``shapes`` (procedural sets), ``image_folder``, ``image_data``
(:class:`ImageData`, class and factor counts), ``loader`` (:class:`InMemoryLoader`). Figures of a
dataset are in :mod:`vae_lib.viz.data`.
"""
from vae_lib.data.errors import DatasetFileError, DatasetNotFoundError
from vae_lib.data.image_data import ImageData, class_counts, factor_counts
from vae_lib.data.load import DATASET_NAMES, SPLITS, load_dataset
from vae_lib.data.loader import InMemoryLoader
from vae_lib.data.shapes import FACTOR_BINS, SHAPE_NAMES, render_from_factors, render_shapes
from vae_lib.data.synthetic_digits import render_digits

__all__ = ["DATASET_NAMES", "FACTOR_BINS", "SHAPE_NAMES", "SPLITS", "DatasetFileError", "DatasetNotFoundError",
           "ImageData", "InMemoryLoader", "class_counts", "factor_counts", "load_dataset", "render_digits",
           "render_from_factors", "render_shapes"]
