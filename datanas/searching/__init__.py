"""Search: written only against a SearchSpace and a Task.

config.py (SearchConfig, temperature schedule), searcher.py (compiled
joint/alternate/fixed-child steps), unrolled.py (second-order DARTS
gradient), run.py (a search run on the engine's loop + derivation and
artifacts), random_search.py (the random baseline), methods.py (DATA, GDAS,
DARTS settings), runs.py (build and run any method by name).
"""
