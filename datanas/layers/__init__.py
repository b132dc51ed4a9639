"""Keras layers of datanas (all registered as serializable under 'datanas')."""

from datanas.layers.conv_ops import (DilConv, FactorizedReduce, Identity, Pool, ReLUConvBN,
                                     SepConv, Subsample, build_conv_op)
from datanas.layers.ensemble_gumbel_softmax import EnsembleGumbelSoftmax, inclusion_probabilities
from datanas.layers.mixed_edge import EDGE_MODES, MixedEdge

__all__ = [
    "EnsembleGumbelSoftmax", "inclusion_probabilities", "MixedEdge", "EDGE_MODES",
    "SepConv", "DilConv", "Pool", "Identity", "FactorizedReduce", "ReLUConvBN",
    "Subsample", "build_conv_op",
]
