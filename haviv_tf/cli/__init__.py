"""The command line's modes, one module per floor they drive; haviv_tf/main.py defines the
flags and dispatches."""
