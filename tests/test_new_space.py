"""A new search space is one registered SearchSpace: a chain of mixed edges
over three ops, with its own genotype format, defined here in tests/ and
registered from here, searches, derives, trains and draws through the library
with no file under datanas/, flags/ or trainers/ written for it."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from datanas.core.tracking import LayerList
from datanas.estimators import make_estimator
from datanas.searching.config import SearchConfig
from datanas.searching.inputs import SearchInputs
from datanas.searching.run import run_search
from datanas.spaces import get_space, register_space
from datanas.spaces.base import SearchSpace
from datanas.spaces.drawing import CellGraph, genotype_dot, genotype_text
from datanas.tasks import ClassificationTask
from datanas.training.final_network import FinalNetwork
from datanas.training.trainer import TrainConfig, run_training

OPS = ("zero", "identity", "dense")
SHAPE, CLASSES, UNITS = (4, 4, 1), 3, 8


@dataclasses.dataclass(frozen=True)
class ChainGenotype:
    """One op per edge of the chain x -> h1 -> h2 -> ... (its own JSON form)."""
    ops: tuple

    cell_kinds = ("chain",)

    def __post_init__(self):
        bad = [op for op in self.ops if op not in OPS]
        if bad or not self.ops:
            raise ValueError(f"chain ops must be among {OPS}; got {list(self.ops)}")

    def to_dict(self):
        return {"chain": list(self.ops)}

    @classmethod
    def from_dict(cls, data):
        return cls(tuple(data["chain"]))

    def summary(self):
        return "x -> " + " -> ".join(self.ops)

    def cell_graph(self, kind):
        del kind
        nodes = [(i + 1, f"h{i + 1}", "sum", [(op, i)]) for i, op in enumerate(self.ops)]
        return CellGraph(inputs=[(0, "x")], nodes=nodes, output=("y", "last", [len(self.ops)]))


def _apply_ops(h, dense, weights):
    """w_zero * 0 + w_identity * h + w_dense * relu(dense(h))."""
    return weights[1] * h + weights[2] * tf.nn.relu(dense(h))


class ChainSupernet(keras.Model):
    """Stem and `edges` mixed edges over OPS (the body), then the task's head."""

    def __init__(self, edges, weighting, seed, head, **kwargs):
        super().__init__(**kwargs)
        self.num_edges, self.weighting, self.seed = edges, weighting, seed
        self.estimator = make_estimator(weighting, num_samples=2, temperature=1.0, seed=seed)
        self.flatten = keras.layers.Flatten()
        self.stem = keras.layers.Dense(UNITS, name="stem")
        self.denses = LayerList([keras.layers.Dense(UNITS, name=f"dense_{i}")
                                 for i in range(edges)], name="denses")
        self.head = head
        init = keras.initializers.RandomNormal(stddev=1e-3, seed=seed)
        self.arch_logits = [self.add_weight(shape=(len(OPS),), initializer=init,
                                            name=f"arch_{i}") for i in range(edges)]

    def build(self, input_shape):
        self.forward(keras.ops.zeros((1,) + tuple(input_shape[1:])),
                     self.edge_weights(stochastic=False))
        self.built = True

    @property
    def network_variables(self):
        layers = [self.stem, *self.denses, self.head]
        return [v for layer in layers for v in layer.trainable_variables]

    architecture_variables = property(lambda self: list(self.arch_logits))

    def edge_weights(self, stochastic, seed=None):
        if not stochastic:
            return [self.estimator.deterministic_code(l) for l in self.arch_logits]
        return [self.estimator.sample(l, seed=None if seed is None else
                                      tf.stack([seed[0], seed[1] * 64 + i]))
                for i, l in enumerate(self.arch_logits)]

    def forward(self, inputs, weights, training=None):
        h = self.stem(self.flatten(inputs))
        for dense, w in zip(self.denses, weights):
            h = _apply_ops(h, dense, tf.cast(w, h.dtype))
        return self.head(h)

    def call(self, inputs, training=None):
        return self.forward(inputs, self.edge_weights(stochastic=False), training)

    def get_config(self):
        return {"edges": self.num_edges, "weighting": self.weighting, "seed": self.seed}


class ChainNetwork(keras.Model):
    """The chain of a genotype, trained from scratch."""

    def __init__(self, genotype, **kwargs):
        super().__init__(**kwargs)
        self.genotype = genotype
        self.flatten = keras.layers.Flatten()
        self.stem = keras.layers.Dense(UNITS, name="stem")
        self.denses = LayerList([keras.layers.Dense(UNITS, name=f"dense_{i}")
                                 for i in range(len(genotype.ops))], name="denses")
        self.classifier = keras.layers.Dense(CLASSES, name="classifier")
        self.drop_path_rate = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                              name="drop_path_rate")

    def build(self, input_shape):
        self.logits_and_auxiliary(keras.ops.zeros((1,) + tuple(input_shape[1:])))
        self.built = True

    def logits_and_auxiliary(self, inputs, training=None):
        h = self.stem(self.flatten(inputs))
        for dense, op in zip(self.denses, self.genotype.ops):
            h = _apply_ops(h, dense, [float(op == name) for name in OPS])
        return self.classifier(h), None

    def call(self, inputs, training=None):
        return self.logits_and_auxiliary(inputs, training)[0]

    def get_config(self):
        return {"genotype": self.genotype.to_dict()}


@dataclasses.dataclass(frozen=True)
class ChainSettings:
    edges: int = 3


class ChainSpace(SearchSpace):
    name = "test_chain"
    derivation_rules = ("argmax",)
    settings_class = ChainSettings

    def build_supernet(self, settings, *, num_outputs, input_shape, weighting, mode,
                       num_samples, scope, temperature, seed, egs_gradient="full",
                       edge_combine="mean", head=None):
        model = ChainSupernet(settings.edges, weighting, seed,
                              head or keras.layers.Dense(num_outputs, name="head"))
        model.build((None,) + tuple(input_shape))
        return model

    def derive(self, supernet, rule, seed):
        return ChainGenotype(tuple(OPS[int(np.argmax(v.numpy()))]
                                   for v in supernet.arch_logits))

    def child_weights(self, supernet, genotype):
        return [tf.constant([float(op == name) for name in OPS]) for op in genotype.ops]

    def random_genotype(self, supernet, rng):
        return ChainGenotype(tuple(rng.choice(OPS) for _ in supernet.arch_logits))

    def probabilities(self, supernet):
        p = [tf.nn.softmax(v).numpy().tolist() for v in supernet.arch_logits]
        return {"primitives": list(OPS), "chain": [{"p": [row], "inclusion": [row]} for row in p]}

    def selection_entropy(self, supernet):
        p = [tf.nn.softmax(v).numpy() for v in supernet.arch_logits]
        return float(np.mean([-(row * np.log(row)).sum() for row in p]))

    def describe(self, genotype):
        return {"chain": list(genotype.ops)}

    def genotype_from_dict(self, data):
        return ChainGenotype.from_dict(data)

    def final_network(self, genotype, **kwargs):
        return ChainNetwork(genotype, **kwargs)


CHAIN = register_space(ChainSpace())


def _data(count, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count,) + SHAPE).astype(np.float32)
    labels = (images.reshape(count, -1)[:, :CLASSES].argmax(axis=1)).astype(np.int32)
    return images, labels


@dataclasses.dataclass
class ArrayInputs:
    """The SearchInputs protocol over numpy arrays (one pipeline)."""
    batch_size: int = 8

    def __post_init__(self):
        self.images, self.labels = _data(32, 0)
        self.valid = _data(16, 1)

    def distributed_steps_per_epoch(self, num_input_pipelines, num_replicas):
        return len(self.labels) // self.batch_size

    def sizes(self):
        return {"train": len(self.labels), "validation": len(self.valid[1])}

    def train(self, epoch, input_context=None):
        return tf.data.Dataset.from_tensor_slices((self.images, self.labels)).shuffle(
            32, seed=epoch).batch(self.batch_size, drop_remainder=True)

    arch = train

    def validation(self, input_context=None):
        return tf.data.Dataset.from_tensor_slices(self.valid).batch(self.batch_size)


def test_the_chain_space_is_found_by_its_name():
    assert get_space("test_chain") is CHAIN
    assert isinstance(ArrayInputs(), SearchInputs)


def test_a_space_defined_in_tests_searches_derives_trains_and_draws(tmp_path):
    space = get_space("test_chain")
    task = ClassificationTask(CLASSES)
    supernet = space.build_supernet(ChainSettings(), num_outputs=CLASSES, input_shape=SHAPE,
                                    weighting="egs", mode="sparse", num_samples=2,
                                    scope="edge", temperature=1.0, seed=0,
                                    head=task.build_head())
    result = run_search(supernet, ArrayInputs(), SearchConfig(epochs=2, seed=0,
                                                              derivation="argmax"),
                        str(tmp_path / "search"), space=space, task=task, verbose=0)
    genotype = result.genotype
    assert isinstance(genotype, ChainGenotype) and len(genotype.ops) == 3
    with open(tmp_path / "search" / "genotype.json") as handle:
        assert space.genotype_from_dict(json.load(handle)) == genotype
    assert os.path.exists(tmp_path / "search" / "cell_epoch_002.json")

    network = space.final_network(genotype)
    assert isinstance(network, FinalNetwork)
    network.build((None,) + SHAPE)
    inputs = ArrayInputs()
    results = run_training(network, inputs.train, {"valid": lambda context: inputs.validation()},
                           TrainConfig(epochs=1), str(tmp_path / "train"), steps_per_epoch=4,
                           image_shape=SHAPE, task=task, global_batch_size=8, verbose=0)
    assert np.isfinite(results["final"]["valid_loss"])

    text = genotype_text(genotype)
    assert text.startswith("chain cell: inputs x; 3 nodes; output y = last(h3)")
    assert f"h1 = sum of 1 (op, input) pair: {genotype.ops[0]}(x)" in text
    assert '"chain_0" -> "chain_1"' in genotype_dot(genotype)


def test_the_trainer_refuses_a_model_that_is_not_a_final_network():
    from datanas.training.trainer import GenotypeTrainer  # pylint: disable=import-outside-toplevel
    model = keras.Sequential([keras.layers.Dense(CLASSES)])
    with pytest.raises(TypeError, match="Sequential cannot be trained as a final network: it has "
                                        "no logits_and_auxiliary or drop_path_rate"):
        GenotypeTrainer(model, TrainConfig(epochs=1), steps_per_epoch=1)
