"""Adapt a trained model to the image being denoised (`test_single.py --adapt`, the web demo).

The model is trained for a few steps on the noisy input itself, with its own self-supervised
loss (Noise2Same's, or Noise2SamePro's), and the adapted weights denoise that image only:
`adapted` restores the weights it started from on exit, and nothing is written to disk.
What keeps a few steps on one image from wrecking the model: batch normalisation stays in
inference mode (the trained moving statistics normalise, and are not updated), a fresh Adam
at a small learning rate (ADAPT_LR, a tenth of the original's 4e-4), and few steps.

The loss's noise level: Noise2Same's lmbd stands for 2 x the noise std, and a model trained at
sigma 25 carries that of sigma 25 (an N2SP model's guard floors it there too). Adapting with it
to an image of other noise keeps the trained smoothing. lmbd='image' uses 2 x the input's own
blind noise estimate instead (`utils.core.noise.relative_noise` of the normalised image), in
rec + lmbd * sqrt(inv) for either class; lmbd='model' keeps the model's own loss.
"""
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import numpy as np

ADAPT_STEPS = 100
ADAPT_LR = 4e-5
ADAPT_BATCH = 8
ADAPT_PATCH = 64
ADAPT_LMBD = 'model'  # the loss's noise level: 'model' (its own loss) or 'image' (see above)
LMBD_CHOICES = ('model', 'image')
# seconds of ADAPT_STEPS steps and the prediction of a 481x321 image by a width-32 model,
# float32, tracing included, nothing else running, on this project's 2-core machine (AVX-512
# BF16; 2026-12-02: 37.5 s on a validation image; 2026-12-03: 25-34 s on 10 test images,
# results/adapt/adapt.md): what the web demo tells a user to expect, rounded up
ADAPT_SECONDS = 40


def normalised(model, image: np.ndarray) -> np.ndarray:
    """The image as the model's prediction normalises it, (spatial..., C) float32."""
    x = np.asarray(image, np.float32)
    if x.ndim == model.dim:
        x = x[..., None]
    if x.ndim != model.dim + 1 or x.shape[-1] != model.in_channels:
        raise ValueError(f"image of shape {np.shape(image)} does not fit a {model.dim}D model "
                         f"with {model.in_channels} channel(s)")
    from utils.core.normalisation import normalise
    return normalise(x, per_channel=model.normalisation == 'channel')


def patch_size(model, shape) -> list:
    """ADAPT_PATCH per axis, smaller for small images (a multiple of the network's 2**depth)."""
    multiple = 2 ** model.net.depth
    sizes = [min(ADAPT_PATCH, s // multiple * multiple) for s in shape]
    if min(sizes) < multiple:
        raise ValueError(f"an image of size {tuple(shape)} is too small to adapt to (at least "
                         f"{multiple} pixels per axis)")
    return sizes


def adaptation_loss(model, x: np.ndarray, lmbd: str) -> Callable:
    """The loss of the loss terms that adapting minimises: the model's own ('model'), or
    rec + 2 s sqrt(inv) with s the blind noise std of x, the normalised image ('image')."""
    if lmbd == 'model':
        return model.loss
    if lmbd != 'image':
        raise ValueError(f"lmbd must be one of {LMBD_CHOICES}, got {lmbd!r}")
    from models import noise2same_loss
    from utils.core.noise import relative_noise
    value = 2.0 * relative_noise(x, model.dim)
    return lambda terms: noise2same_loss(terms, value)


def adapt_steps(model, image: np.ndarray, steps: int = ADAPT_STEPS, lr: float = ADAPT_LR,
                batch_size: int = ADAPT_BATCH, seed: int = 0,
                lmbd: str = ADAPT_LMBD) -> Iterator[float]:
    """Train `model`'s weights in memory on `image` ((spatial...) or (spatial..., C), any
    range), yielding the loss after each of `steps` steps. Batch norm in inference mode,
    a fresh Adam at `lr`, the loss of `adaptation_loss(lmbd)`; the model's optimizer state,
    step and checkpoints are untouched."""
    import tensorflow as tf

    from utils.data.pipeline import mask_box_size, training_dataset
    if steps < 1 or not lr > 0:
        raise ValueError(f"adapting needs steps >= 1 and lr > 0, got {steps} and {lr}")
    if model.loss_scale is not None:
        raise ValueError("adapting needs --precision float32 or mixed_bfloat16")
    model._restore_latest()
    x = normalised(model, image)
    loss_of = adaptation_loss(model, x, lmbd)
    size = patch_size(model, x.shape[:-1])
    batches = training_dataset([x], size, batch_size, mask_box_size(model.mask_perc), seed, 0,
                               steps)
    variables = model.model.trainable_weights
    optimizer = tf.keras.optimizers.Adam(learning_rate=lr)

    @tf.function
    def step(features, noise, mask):
        with tf.GradientTape() as tape:
            terms, _, _ = model.loss_terms(features, noise, mask, training=False)
            loss = loss_of(terms)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for features, noise, mask in batches:
        yield float(step(features, noise, mask))


@contextmanager
def adapted(model, image: np.ndarray, steps: int = ADAPT_STEPS, lr: float = ADAPT_LR,
            progress: Optional[Callable[[int, int], None]] = None, **kwargs):
    """Within the block, `model` holds weights adapted to `image` (`adapt_steps`); on exit
    the weights it had before. progress(done, steps) is called after each step."""
    model._restore_latest()
    before = [(v, v.numpy()) for v in model.model.weights]
    try:
        for done, _ in enumerate(adapt_steps(model, image, steps, lr, **kwargs), 1):
            if progress is not None:
                progress(done, steps)
        yield model
    finally:
        for variable, value in before:
            variable.assign(value)
