"""The records every floor shares: the run configuration, workdir files, TensorBoard tag texts."""
