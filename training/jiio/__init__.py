"""JIIO (joint inference and input optimisation): the augmented fixpoint, decoder training, the Adam baseline,
inverse tasks, decoder checkpoints, the latent density and FID."""
