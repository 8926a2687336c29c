"""One network run on the task: class centres, slow points, speed targets, accuracy by delay,
memory half-lives and per-class predictors."""
