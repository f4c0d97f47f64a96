"""The models, one interface (issue 10): what every layer above asks of a model, never its class.

    conditional                  True: every call below needs labels y, (B,) ints (the CVAE); False: y is None
    data_range                   the pixel range of x and of decoded images; ``data_range_for(**kwargs)``
                                 (classmethod) gives it without building the model
    num_style_layers             style layers that ``mix`` can cross over (0: no style mixing)
    encode(x, y=None)            -> mu, logvar, each (B, z_dim)
    decode(z, y=None, *, noise_mode=None, truncation_psi=1.0)    -> images; truncation is the
                                 StyleGAN trick on w, and a temperature on z (decode(psi z)) in the CVAE
    sample(n, y=None, *, generator=None, truncation_psi=1.0, noise_mode=None)   -> n images
    reconstruct(x, y=None, *, noise_mode=...)                     -> decode(mu), no gradients
    mix(z1, z2, crossover, *, truncation_psi=1.0, noise_mode=None)  (models with style layers)
    channels_last_on_cpu         optional: True where channels_last was measured faster on the CPU

The card's API stays: ``recon_x, mu, logvar = model(x)`` (``model(x, y)`` for the CVAE).
``vae_lib.experiments.REGISTRY`` maps each config name to its model and loss classes.
``vae_lib.models.sampling`` holds every sampling helper above a model's own ``sample``: codes from the
prior, decoding in batches with truncation, samples per class, the CLI's grid.

``classifier`` is not a VAE: it holds the judges' network (``Judge``; trained and cached by
``vae_lib.judges``), here so that the perceptual loss can use a judge's conv blocks as features.
"""
