"""The engine: the run lifecycle shared by search and training.

strategy.py (tf.distribute strategies, run directories, distributed epochs),
steps.py (loss scaling, all-reduce, clip, decay, empty-replica guards),
loop.py (checkpoints, exact resume, SIGTERM, metrics, TensorBoard, progress),
checkpoints.py (restore only into an identical state), run_identity.py and
run_lock.py (one run per directory, refused on a changed identity),
run_files.py, progress.py.  Keras helpers live one layer down, in
``datanas.core``.  Search, random search and training all run through
``loop.run_loop``.
"""
