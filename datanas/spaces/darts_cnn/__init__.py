"""The DARTS convolutional search space (normal and reduction cells).

ops.py (candidate ops) -> mixed_edge.py -> cells.py (search and genotype
cells) -> backbone.py (stems, cell stack) -> supernet.py / networks.py / segmentation.py
(DeepLab-v3 of a genotype);
genotype.py (format, validation), derivation.py (logits -> genotype),
random_cells.py, space.py (the SearchSpace implementation).
"""
