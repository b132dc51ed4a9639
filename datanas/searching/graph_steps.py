"""Search steps as compiled graphs (``execution="graph"``).

Each step is one ``tf.function`` holding the whole supernet, every op behind
a ``tf.cond`` (or an empty batch) that skips it at run time.  Needed by TPUs
(a compiled step) and by spaces whose supernet is not host-driven; building
it takes minutes for the paper's 8-cell supernet.
"""

import functools

import tensorflow as tf

from datanas.engine.steps import reduce_sums, sync_replica_statistics
from datanas.searching.sampled_steps import SampledSteps

__all__ = ["GraphSteps"]


class GraphSteps(SampledSteps):
    """The compiled steps of one `Searcher` (see ``searcher.py``)."""

    def __init__(self, searcher, *, stream_weights, stream_arch):
        super().__init__(searcher, stream_weights=stream_weights, stream_arch=stream_arch)
        # Batches may vary in shape (a last partial batch, variable-length
        # BPTT windows): a second shape generalises the trace instead of
        # compiling one graph per shape.
        compile_step = functools.partial(tf.function, reduce_retracing=True)
        self.joint = compile_step(self.joint_update)
        self.weight = compile_step(self.weight_update)
        self.arch = compile_step(self.arch_update)
        # Edge weights are an input, so every fixed child shares one graph.
        self.fixed_weight = compile_step(self._fixed_weight)
        self.recalibration = compile_step(self._recalibration)
        # Sampled children and a fixed derived child share one evaluation graph.
        self.evaluation = compile_step(self._evaluation)
        self.unrolled_arch = compile_step(searcher.unrolled_arch_update)
        self._evaluations = {}   # evaluation steps per dataset signature

    # -- replica functions -------------------------------------------------
    def _replica_update(self, batch, stream, update_weights, update_arch):
        """Forward/backward of one sampled child; updates the chosen variable sets."""
        s = self.searcher
        inputs, targets = s.task.unpack(batch)
        net_vars = s.model.network_variables if update_weights else []
        arch_vars = s.model.architecture_variables if update_arch else []
        with tf.GradientTape() as tape:
            loss, sums = s.replica_loss(targets, s.forward(inputs, stream))
        grads = tape.gradient(loss, net_vars + arch_vars)
        if update_weights:
            s.apply_weight_gradients(grads[:len(net_vars)])
        if update_arch:
            s.apply_arch_gradients(grads[len(net_vars):])
        return sums, s.task.count(targets)

    def _fixed_replica(self, batch, edge_weights):
        """Weight update of the child given by fixed edge weights (random search)."""
        s = self.searcher
        inputs, targets = s.task.unpack(batch)
        net_vars = s.model.network_variables
        with tf.GradientTape() as tape:
            loss, sums = s.replica_loss(
                targets, s.model.forward(inputs, edge_weights, training=True))
        s.apply_weight_gradients(tape.gradient(loss, net_vars))
        return sums, s.task.count(targets)

    # -- cross-replica steps -----------------------------------------------
    def update(self, batch, stream, update_weights, update_arch, prefix=""):
        per_replica = self.searcher.strategy.run(
            self._replica_update, (batch,),
            dict(stream=stream, update_weights=update_weights, update_arch=update_arch))
        return self.searcher.means(per_replica, prefix)

    def _fixed_weight(self, batch, edge_weights):
        s = self.searcher
        return s.advance(s.means(s.strategy.run(self._fixed_replica, (batch, edge_weights))))

    def _recalibration(self, inputs, edge_weights):
        s = self.searcher

        def replica(inputs, edge_weights):
            # Training-mode forward: batch-norm layers update their moving
            # statistics from this child's activations; no gradient is taken.
            s.model.forward(inputs, edge_weights, training=True)
            sync_replica_statistics(s.statistics)
            return tf.shape(inputs)[0]
        return s.strategy.run(replica, (inputs, edge_weights))

    def _evaluation(self, batch, weights):
        s = self.searcher
        values, count = s.strategy.run(s.eval_replica, (batch, weights))
        return reduce_sums(s.strategy, list(values) + [count])

    # -- traces for a dataset's signature ----------------------------------
    def use_batch_signature(self, train_spec, arch_spec=None):
        """Compiles the training steps for batches of these specs (see
        ``Searcher.use_batch_signature``)."""
        self.joint = tf.function(self.joint_update, input_signature=[train_spec])
        self.weight = tf.function(self.weight_update, input_signature=[train_spec])
        if arch_spec is not None:
            self.arch = tf.function(self.arch_update, input_signature=[arch_spec])
            self.unrolled_arch = tf.function(self.searcher.unrolled_arch_update,
                                             input_signature=[arch_spec, train_spec])

    def evaluation_for(self, dataset, weights):
        """The evaluation step compiled for `dataset`'s element_spec: a last,
        shorter batch would otherwise relax the first trace, and a resumed
        process that evaluates first in a later epoch would run another graph
        than the uninterrupted one."""
        spec = getattr(dataset, "element_spec", None)
        if spec is None:
            return self.evaluation
        signature = [spec, tf.nest.map_structure(
            lambda w: tf.TensorSpec.from_tensor(tf.convert_to_tensor(w)), weights)]
        key = repr(signature)
        if key not in self._evaluations:
            self._evaluations[key] = tf.function(self._evaluation, input_signature=signature)
        return self._evaluations[key]
