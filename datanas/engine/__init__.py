"""The engine: strategy building, distributed step pieces and THE run loop.

strategy.py (tf.distribute strategies, run directories, distributed epochs),
steps.py (loss scaling, all-reduce, clip, decay, empty-replica guards),
loop.py (checkpoints, exact resume, SIGTERM, metrics, TensorBoard, progress),
checkpoints.py (restore only into an identical state), tracking.py
(checkpoint-visible layer lists), run_files.py, progress.py.
Search, random search and training all run through ``loop.run_loop``.
"""
