"""JIIO (joint inference and input optimisation): settings.py (every default), inference.py (the augmented
fixpoint), decoder_training.py (the decoder's config and training), adam_baseline.py, inverse_tasks.py (corrupt and
restore, one stopwatch), comparison.py (the JIIO-vs-Adam protocol), invert_config.py (`inr jiio-invert`'s config),
decoder_checkpoint.py, latent_density.py, fid.py and channels.py (gray/colour matching)."""
