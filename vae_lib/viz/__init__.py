"""Every figure of the course, one submodule per subject; ``viz.<name>`` reaches each of them.

* :mod:`~vae_lib.viz.grids`: the shared layout (``DPI``, ``PADDING``, ``value_range_of``,
  ``grid_array``, ``grid_figure``); image grids, reconstructions, samples per class and per run.
* :mod:`~vae_lib.viz.curves`: training curves, several runs on one axis.
* :mod:`~vae_lib.viz.latents`: interpolations, traversals, class swaps, KL per dimension, active units, the
  latent space itself (encoder means coloured by class).
* :mod:`~vae_lib.viz.style`: the StyleGAN machinery: z against w, truncation, noise, synthesis, style mixing.
* :mod:`~vae_lib.viz.features`: feature maps of a network's layers.
* :mod:`~vae_lib.viz.scores`: the judges' numbers (conditional accuracy, factor transfer).
* :mod:`~vae_lib.viz.data`: what a dataset holds.

Each function returns a ``matplotlib.figure.Figure`` built without pyplot, so it works headless
(any backend, Agg included) and nothing piles up in pyplot's list of open figures. In a notebook,
leave the figure as the last expression of a cell to show it; elsewhere call ``fig.savefig(path)``.

Images are tensors (N, C, H, W) with C = 1 (grayscale) or C = 3 (RGB) whose values lie in
``value_range``: (0, 1) for the digit sets and the Bernoulli CVAE, (-1, 1) for the Gaussian CVAE and
the StyleGAN-VAE (a model's figures default to its ``data_range``). Values outside the range are
clipped for display.
"""
from vae_lib.viz.curves import SMOOTHING, compare_runs, metric_curves, training_curves
from vae_lib.viz.data import factor_histograms, factor_traversals, show_dataset
from vae_lib.viz.features import feature_maps
from vae_lib.viz.grids import (DPI, MAX_WIDTH_IN, PADDING, class_conditional_samples, grid_array, grid_figure,
                               image_grid, reconstructions, samples_by_prior, samples_per_run,
                               value_range_of)
from vae_lib.viz.latents import (TRAVERSAL_VALUES, class_swap, decode_latents, interpolate_latents,
                                 interpolation_paths, kl_per_dimension, latent_interpolation, latent_space,
                                 latent_traversal, latent_usage_per_run, project_2d)
from vae_lib.viz.scores import (conditional_accuracy_bars, factor_transfer_curves, rate_distortion, read_back_bars,
                               seed_comparison, transfer_by_level)
from vae_lib.viz.style import (TRUNCATION_PSIS, latent_statistics, layer_swap_grid, mapping_layer_scales,
                               mixing_influence_curves, noise_variation, style_mixing_grid, synthesis_ladder,
                               truncation_fid_curves, truncation_grid)

__all__ = ["DPI", "MAX_WIDTH_IN", "PADDING", "SMOOTHING", "TRAVERSAL_VALUES", "TRUNCATION_PSIS", "metric_curves",
           "class_conditional_samples", "class_swap", "compare_runs", "conditional_accuracy_bars", "read_back_bars",
           "decode_latents", "factor_histograms", "factor_transfer_curves", "transfer_by_level", "factor_traversals",
           "feature_maps", "grid_array", "grid_figure", "image_grid", "interpolate_latents",
           "interpolation_paths", "kl_per_dimension", "latent_interpolation", "latent_statistics",
           "latent_space", "latent_traversal", "latent_usage_per_run", "layer_swap_grid", "mapping_layer_scales",
           "mixing_influence_curves", "noise_variation", "project_2d", "rate_distortion", "reconstructions",
           "samples_by_prior", "samples_per_run", "seed_comparison",
           "show_dataset", "style_mixing_grid", "synthesis_ladder", "training_curves", "truncation_fid_curves", "truncation_grid",
           "value_range_of"]
