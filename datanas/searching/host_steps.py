"""Search steps driven from the host (``execution="host"``).

The step's code is sampled by a small compiled function, then the forward
and backward passes run eagerly, calling only the sampled child's ops, each
through a compiled function shared by every op of the same configuration and
shape (``core/layer_functions.py``); the update (all-reduce, clipping,
decay, optimizers) is one compiled function.  Nothing of the unselected
supernet is built or executed, so the one-time cost is a few dozen small
functions and the memory is the child's.  The second-order step stays
compiled.
"""

import functools

import tensorflow as tf

from datanas.engine.steps import reduce_sums, sync_replica_statistics
from datanas.searching.sampled_steps import SampledSteps

__all__ = ["HostSteps"]


class HostSteps(SampledSteps):
    """The host-driven steps of one `Searcher` (see ``searcher.py``)."""

    def __init__(self, searcher, *, stream_weights, stream_arch):
        super().__init__(searcher, stream_weights=stream_weights, stream_arch=stream_arch)
        self.joint, self.weight, self.arch = self.joint_update, self.weight_update, self.arch_update
        self._zeros = {}
        self._num_network_variables = len(searcher.model.network_variables)
        self._apply = {
            (True, True): tf.function(functools.partial(self._apply_gradients, True, True)),
            (True, False): tf.function(functools.partial(self._apply_gradients, True, False)),
            (False, True): tf.function(functools.partial(self._apply_gradients, False, True))}
        self.unrolled_arch = tf.function(searcher.unrolled_arch_update, reduce_retracing=True)

    # -- the steps ---------------------------------------------------------
    def fixed_weight(self, batch, edge_weights):
        model = self.searcher.model
        return self.searcher.advance(self._train(
            batch, lambda inputs: model.forward(inputs, edge_weights, training=True),
            True, False))

    def recalibration(self, inputs, edge_weights):
        s = self.searcher

        def replica(inputs):
            with s.layer_functions.active():
                s.model.forward(inputs, edge_weights, training=True)
            sync_replica_statistics(s.statistics)
            return tf.shape(inputs)[0]
        return s.strategy.run(replica, (inputs,))

    def evaluation(self, batch, weights):
        s = self.searcher

        def replica(batch):
            with s.layer_functions.active():
                return s.eval_replica(batch, weights)
        values, count = s.strategy.run(replica, (batch,))
        return reduce_sums(s.strategy, list(values) + [count])

    def use_batch_signature(self, train_spec, arch_spec=None):
        """Nothing: host steps are not compiled as a whole (their shared layer
        functions are traced per exact input shape, the same in every process)."""
        del train_spec, arch_spec

    def evaluation_for(self, dataset, weights):
        del dataset, weights
        return self.evaluation

    # -- pieces ------------------------------------------------------------
    def _zero_gradient(self, variable):
        """A cached zero tensor (an unselected op's gradient), so steps do
        not allocate one per variable."""
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else tf.get_static_value(
            context.replica_id_in_sync_group)
        key = (tuple(variable.shape), variable.dtype, int(replica))
        if key not in self._zeros:
            self._zeros[key] = tf.zeros(variable.shape, variable.dtype)
        return self._zeros[key]

    def _gradients(self, compute_loss, variables):
        """Eager forward/backward of `compute_loss()` (loss, extras) through
        the shared layer functions; missing gradients are zeros."""
        with self.searcher.layer_functions.active():
            with tf.GradientTape() as tape:
                loss, extras = compute_loss()
            grads = tape.gradient(loss, variables)
        return [self._zero_gradient(v) if g is None else g
                for g, v in zip(grads, variables)], extras

    def _apply_gradients(self, update_weights, update_arch, grads):
        """Compiled: all-reduce, clip, decay and apply per-replica gradients
        (network variables first, then architecture variables)."""
        s = self.searcher

        def replica(grads):
            count = self._num_network_variables if update_weights else 0
            if update_weights:
                s.apply_weight_gradients(list(grads[:count]))
            if update_arch:
                s.apply_arch_gradients(list(grads[count:]))
        s.strategy.run(replica, (grads,))

    def _train(self, batch, forward, update_weights, update_arch, prefix=""):
        """Per replica: eager forward/backward of `forward(inputs)`; then the
        compiled update of the chosen variable sets; the step's means."""
        s = self.searcher
        variables = ((s.model.network_variables if update_weights else [])
                     + (s.model.architecture_variables if update_arch else []))

        def replica(batch):
            inputs, targets = s.task.unpack(batch)
            grads, sums = self._gradients(
                lambda: s.replica_loss(targets, forward(inputs)), variables)
            return grads, sums, s.task.count(targets)

        grads, sums, count = s.strategy.run(replica, (batch,))
        self._apply[(update_weights, update_arch)](grads)
        return s.means((sums, count), prefix)

    def update(self, batch, stream, update_weights, update_arch, prefix=""):
        return self._train(batch, lambda inputs: self.searcher.forward(inputs, stream),
                           update_weights, update_arch, prefix)
