"""Across networks: sweeps (local or Slurm), correlations of speed and memory, the report."""
