"""The seam between the search engine and a search space.

A search space owns everything specific to one family of architectures:
candidate ops, mixed edges, cells, the supernet, the final network built
from a genotype, the genotype format and its validation, derivation rules
and random sampling.  The searcher, the random-search baseline, the run
loop and the trainers only use this interface, so a new space (e.g.
recurrent cells) plugs in without touching them.

A *supernet* built by a space is a Keras model with:

* ``architecture_variables`` / ``network_variables`` -- the two variable
  sets optimised by the searcher;
* ``estimator`` -- the layer turning logits into edge weights (see
  ``datanas.estimators``), with ``set_temperature``;
* ``edge_weights(stochastic, seed)`` -- a nested structure of weight tensors
  (a sample when ``stochastic``; a pure function of ``seed`` if given);
* ``forward(inputs, edge_weights, training)`` -- the network's outputs for
  those weights (only the selected ops run when the codes are binary).

A supernet may set ``supports_host_execution = True`` when its ``forward``,
run eagerly, calls only the selected ops through
``datanas.core.layer_functions.call_layer``: the searcher then runs its
steps host-driven (``SearchConfig.execution``), without compiling the
supernet as one graph.
"""

import abc

__all__ = ["SearchSpace"]


class SearchSpace(abc.ABC):
    """What one search space provides (see the module docstring)."""

    #: Registry name (``--space``).
    name = None
    #: What the supernet reads: "images" (the image search trainers offer
    #: the space) or "tokens" (the language-model search trainers).
    input_kind = "images"
    #: Derivation rules ``derive`` accepts; the first is the default of DATA.
    derivation_rules = ()
    #: Dataclass of the space's size settings (cells, channels, nodes, ops...).
    settings_class = None

    #: Earlier names of derivation rules, still accepted.
    rule_aliases = {}

    def canonical_rule(self, rule):
        """The rule's current name; ValueError naming the allowed rules."""
        rule = self.rule_aliases.get(rule, rule)
        if rule not in self.derivation_rules:
            raise ValueError(f"derivation must be one of {', '.join(self.derivation_rules)} "
                             f"for the {self.name} space; got {rule!r}.")
        return rule

    @abc.abstractmethod
    def build_supernet(self, settings, *, num_outputs, input_shape, weighting, mode,
                       num_samples, scope, temperature, seed, egs_gradient="full",
                       edge_combine="mean", head=None):
        """A built supernet (see the module docstring).  ``egs_gradient``:
        whether undrawn ops are computed forward only ("full") or not at all
        ("sampled"); ``edge_combine``: whether an edge averages ("mean") or
        adds ("sum") the ops its code selects.  ``head``: the task's layer
        from the body's last features to the outputs (``Task.build_head``),
        or None where the space's network ends in its own `num_outputs`
        outputs (e.g. a language model's decoder tied to its embedding)."""

    @abc.abstractmethod
    def derive(self, supernet, rule, seed):
        """The genotype `rule` derives from the supernet's logits."""

    @abc.abstractmethod
    def child_weights(self, supernet, genotype):
        """Fixed edge weights that make the supernet compute `genotype`."""

    @abc.abstractmethod
    def random_genotype(self, supernet, rng):
        """A genotype drawn uniformly from the space (numpy Generator `rng`)."""

    @abc.abstractmethod
    def probabilities(self, supernet):
        """JSON-ready selection and inclusion probabilities of every choice."""

    @abc.abstractmethod
    def selection_entropy(self, supernet):
        """Mean entropy of the architecture distributions (nats)."""

    @abc.abstractmethod
    def describe(self, genotype):
        """JSON-ready facts of a genotype for result files (e.g. skip-connects)."""

    def resource_summary(self, supernet, genotype):
        """JSON-ready costs of a resource-aware search (the metric, lambda,
        the expected cost of a sampled child and the derived child's cost);
        {} when the space or the run has no op costs."""
        del supernet, genotype
        return {}

    @abc.abstractmethod
    def genotype_from_dict(self, data):
        """Validated genotype from its JSON form (one-line errors)."""

    @abc.abstractmethod
    def final_network(self, genotype, **kwargs):
        """The network trained from scratch for `genotype`: a Keras model
        with what ``datanas.training.final_network.FinalNetwork`` names."""

    def probability_rows(self, kind, num_nodes):
        """Row labels, top to bottom, of the (edge x op) probability image of
        cell `kind` with `num_nodes` nodes (``probabilities()[kind]``)."""
        del kind
        return [f"node {node} <- input {source}" for node in range(num_nodes)
                for source in range(node + 1)]
