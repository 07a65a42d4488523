"""Training: distillation into a small generator, the AnimeGANv2 GAN recipe, and the
shared pieces both use (perceptual features, photo sampling, run folders).

Nothing here is imported by the stylizing path; ``python -m animegan distill|train``
dispatches to :mod:`animegan.train.cli`.
"""


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says what to do."""


__all__ = ["TrainingError"]
