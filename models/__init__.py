"""Coordinate networks (torch.nn only): explicit SIREN and MFN models and the registry that names them."""

from models.registry import MODELS, build_model, count_parameters, get_spec, model_names

__all__ = ["MODELS", "build_model", "count_parameters", "get_spec", "model_names"]
