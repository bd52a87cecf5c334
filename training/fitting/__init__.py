"""Fitting one network to one signal: the Signal types, the fit loop, amortized fixpoints, evaluation,
rendering, recipes, device sizing and checkpoints."""
