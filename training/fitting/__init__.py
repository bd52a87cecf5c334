"""Fitting one network to one signal: the signal types (grids and scattered samples) and how each is evaluated,
the typed fit config and its resolution, the fit loop, amortized fixpoints, chunked rendering, recipe rules,
3D shapes as samples, device sizing and checkpoints."""
