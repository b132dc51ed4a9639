"""Training a found architecture from scratch: trainer.py (steps + the
engine's run loop), export.py (SavedModel), cell_summaries.py
(TensorBoard text and pictures of the trained cell)."""
