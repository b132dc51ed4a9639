"""Public Keras layers of datanas, for use in other people's models.

All are registered as serializable under the 'datanas' package; the
estimators live in ``datanas.estimators``, the conv-space layers in
``datanas.spaces.darts_cnn``, the recurrent cells in ``datanas.spaces.darts_rnn``
(``RecurrentCell`` is a Keras RNN cell: ``keras.layers.RNN(RecurrentCell(genotype, units))``).
"""

from datanas.core.tracking import LayerList
from datanas.estimators import EnsembleGumbelSoftmax, SoftmaxMixing, inclusion_probabilities
from datanas.spaces.darts_cnn.cells import GenotypeCell, SearchCell
from datanas.spaces.darts_cnn.mixed_edge import EDGE_MODES, MixedEdge
from datanas.spaces.darts_rnn.carried_state import CarriedState
from datanas.spaces.darts_rnn.cells import RecurrentCell, SearchRecurrentCell
from datanas.spaces.darts_cnn.ops import (DilConv, FactorizedReduce, Identity, Pool, ReLUConvBN,
                                          SepConv, Subsample, build_conv_op)
from datanas.spaces.darts_cnn.segmentation import ASPP, NetworkDeepLabV3

__all__ = [
    "EnsembleGumbelSoftmax", "SoftmaxMixing", "inclusion_probabilities", "MixedEdge",
    "EDGE_MODES", "SearchCell", "GenotypeCell", "LayerList",
    "SepConv", "DilConv", "Pool", "Identity", "FactorizedReduce", "ReLUConvBN",
    "Subsample", "build_conv_op", "RecurrentCell", "SearchRecurrentCell", "CarriedState",
    "ASPP", "NetworkDeepLabV3",
]
