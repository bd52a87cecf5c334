"""JIIO decoders on the file side: train or load one for a run (decoder_runs), draw and grid samples from one
(decoder_sample), and find the Inception network FID needs (fid_model)."""
