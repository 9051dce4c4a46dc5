"""Training and evaluation data: synthetic songs, stem-folder datasets, augmentation, fixed splits."""
