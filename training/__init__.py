"""Tensors in, tensors out: signals, the fit loop, evaluation, metrics and checkpoint payloads."""
