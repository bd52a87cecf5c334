"""Modalities: one module per kind of signal (image, audio, video, shape), each a :class:`Modality` registered by
name. See :mod:`inr_cli.modalities.base` for what a modality provides."""

from inr_cli.modalities.base import (FitCommandConfig, FittedNetwork, LoadedSignal, Modality, ModalityOptions,
                                     Outputs, SampleRequest, SampleTarget, get_modality, grid_quality,
                                     modality_names, register_modality)

__all__ = ["FitCommandConfig", "FittedNetwork", "LoadedSignal", "Modality", "ModalityOptions", "Outputs",
           "SampleRequest", "SampleTarget", "get_modality", "grid_quality", "modality_names", "register_modality"]
