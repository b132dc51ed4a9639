"""The lowest layer: Keras and TensorFlow helpers that know nothing of
architecture search.

tracking.py (checkpoint-visible layer lists, seed-state tracking),
layer_functions.py (compiled functions shared by same-shaped layers),
replicas.py (a distributed variable's copy on this replica), precision.py
(the dtype policy), allocator.py (glibc malloc thresholds), model_stats.py
(parameter and multiply-add counts), probability_image.py (a probability
matrix as an RGB heat-map), heads.py (output heads a task puts on a body).
"""
