"""Each experiment's tables and figures, drawn from its results (experiments/NAME.py runs it)."""
