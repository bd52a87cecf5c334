"""Media readers and writers: images, audio, video, meshes and image collections <-> arrays and tensors."""
