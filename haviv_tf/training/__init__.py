"""Training a network in its workdir: fit(), checkpoints, resume, distribution strategies."""
