"""Training a found architecture from scratch: trainer.py (steps + the
engine's run loop), export.py (SavedModel), model_stats.py (parameters,
multiply-adds)."""
