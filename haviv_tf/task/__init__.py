"""The delayed-classification task: image sources, curricula, trials and the masked loss."""
