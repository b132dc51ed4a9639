"""Word-level language models around a recurrent cell (DARTS/AWD-LSTM form).

embedding (uniform +-0.1) -> locked dropout ``dropout_i`` -> one recurrent
layer (variational dropout ``dropout_x`` on its input and ``dropout_h`` on
its states, masks fixed over the window) -> locked dropout ``dropout`` ->
decoder tied to the embedding, plus a bias.  Embedding size = hidden size
(weight tying).  Dropout rates default to DARTS' recurrent recipe.

A batch is a dict from ``data_tf.lm_inputs``: ``tokens`` [rows, T],
``reset``, ``stream`` and ``seed``.  The model starts from the state carried
for the batch's stream (zeros when ``reset``) and stores its last state back
(``carried_state.py``).  Dropout masks are a pure function of the batch's
``seed``, drawn for the global batch and sliced per replica, so runs are
reproducible and a mirrored step equals the single-device step.

``forward`` returns ``{"logits": [rows, T, V], "temporal": [rows],
"activation": [rows]}``: the logits and, per row, the mean squared change of
the raw outputs between time steps (temporal activation regularisation, TAR)
and the mean square of the dropped outputs (AR); the task weighs them.

``RNNSearchModel`` is the supernet of the recurrent space (the interface of
``datanas.spaces.base``); ``RNNLanguageModel`` trains a genotype's cell.
"""

import keras
import tensorflow as tf

from datanas.estimators import estimator_class, make_estimator
from datanas.spaces.darts_rnn.carried_state import CarriedState, replica_rows
from datanas.spaces.darts_rnn.cells import EGS_GRADIENTS, RecurrentCell, SearchRecurrentCell
from datanas.spaces.darts_rnn.genotype import RNN_PRIMITIVES, check_rnn_primitives
from datanas.spaces.resource_aware import ResourceAwareSampling

__all__ = ["RNNSearchModel", "RNNLanguageModel", "DROPOUT_DEFAULTS", "EGS_SCOPES",
           "EGS_GRADIENTS", "EDGE_COMBINES", "combine_edge_code"]

#: DARTS rnn/train.py and train_search.py defaults.
DROPOUT_DEFAULTS = {"dropout": 0.75, "dropout_h": 0.25, "dropout_x": 0.75, "dropout_i": 0.2}
EGS_SCOPES = ("edge", "node")
#: How a (node, input) edge combines the activations its EGS code selects.
EDGE_COMBINES = ("mean", "sum")
_MASK_TAGS = {"dropout_i": 1, "dropout_x": 2, "dropout_h": 3, "dropout": 4}


def combine_edge_code(code, primitives, edge_combine):
    """A node's [inputs, K] code with each row (one (node, input) edge)
    divided by its number of non-``none`` ones, at least 1, for
    ``edge_combine="mean"`` (the DATA authors' ``gumbel_sample`` divides a
    sampled code by that count: an edge outputs the mean of its selected
    activations); unchanged for ``"sum"``.  The count is not held constant:
    its gradient reaches the code, as in the authors' division."""
    if edge_combine not in EDGE_COMBINES:
        raise ValueError(f"edge_combine must be one of {', '.join(EDGE_COMBINES)}; "
                         f"got {edge_combine!r}.")
    if edge_combine == "sum":
        return code
    mask = tf.constant([name != "none" for name in primitives], code.dtype)
    count = tf.reduce_sum(code * mask, axis=-1, keepdims=True)
    return code / tf.maximum(count, tf.ones_like(count))


def _check_rate(name, value):
    if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
    return float(value)


class _LanguageModel(keras.Model):
    """Embedding, dropouts, carried state and tied decoder around a cell."""

    def __init__(self, vocab_size, hidden_size, *, dropout, dropout_h, dropout_x, dropout_i,
                 state_rows, seed, **kwargs):
        # float32 under any global dtype policy: ``forward`` reads the
        # variables outside Keras' autocasting ``call``, and the recurrence
        # accumulates rounding over the window.
        policy = keras.dtype_policies.get(kwargs.pop("dtype", None) or "float32")
        if policy.compute_dtype != "float32":
            raise ValueError(f"the recurrent language models compute in float32; got dtype "
                             f"policy {policy.name!r}.")
        super().__init__(dtype="float32", **kwargs)
        for name, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size),
                            ("state_rows", state_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.vocab_size, self.hidden_size, self.state_rows = vocab_size, hidden_size, state_rows
        self.rates = {name: _check_rate(name, value) for name, value in (
            ("dropout", dropout), ("dropout_h", dropout_h), ("dropout_x", dropout_x),
            ("dropout_i", dropout_i))}
        self.seed = seed
        self.embedding = self.add_weight(
            shape=(vocab_size, hidden_size), name="embedding",
            initializer=keras.initializers.RandomUniform(-0.1, 0.1, seed=seed))
        self.decoder_bias = self.add_weight(shape=(vocab_size,), initializer="zeros",
                                            name="decoder_bias")
        self.carried = CarriedState(hidden_size, state_rows, name="carried_state")

    # -- pieces ------------------------------------------------------------
    def _mask(self, seed, stream, name, rows, width, training):
        """[rows, width] dropout mask of this replica's rows (None: no dropout)."""
        rate = self.rates[name]
        if not training or rate == 0.0:
            return None
        offset, replicas = replica_rows(rows)
        # Weight and architecture batches of a step share the window's seed;
        # folding the stream in gives them different masks.
        mask_seed = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), stream),
            _MASK_TAGS[name])
        keep = tf.random.stateless_uniform(tf.stack([rows * replicas, width]),
                                           seed=mask_seed) >= rate
        mask = tf.cast(keep, self.compute_dtype) / (1.0 - rate)
        return tf.slice(mask, tf.stack([offset, 0]), tf.stack([rows, width]))

    def _embed(self, tokens):
        return tf.gather(tf.convert_to_tensor(self.embedding), tokens)

    def _decode(self, outputs):
        return tf.einsum("bth,vh->btv", outputs, self.embedding) + self.decoder_bias

    def _run(self, inputs, step, training, extra, carry=True):
        """Runs `step(x_t, h, x_mask, h_mask) -> (h, extra)` over the window
        (`extra`: zeros shaped like the step's extra output).

        Returns the forward dict and the stacked extras ([T, ...]).
        """
        tokens = tf.cast(inputs["tokens"], tf.int32)
        rows, width = tf.shape(tokens)[0], self.hidden_size
        seed = inputs.get("seed", tf.zeros([2], tf.int64))
        stream = inputs.get("stream", 2)
        if carry:
            h0 = self.carried.read(stream, inputs.get("reset", True), rows)
        else:
            h0 = tf.zeros(tf.stack([rows, width]), self.compute_dtype)
        x = self._embed(tokens)
        mask_i = self._mask(seed, stream, "dropout_i", rows, width, training)
        if mask_i is not None:
            x = x * mask_i[:, tf.newaxis]
        x_mask = self._mask(seed, stream, "dropout_x", rows, width, training)
        h_mask = self._mask(seed, stream, "dropout_h", rows, width, training)

        def body(accumulated, x_t):
            return step(x_t, accumulated[0], x_mask, h_mask)

        # One iteration at a time: time steps depend on each other anyway, and
        # with the search cell's tf.conds in the body, parallel iterations made
        # two identical runs drift apart (~1e-7 after ~25 steps, measured).
        hs, extras = tf.scan(body, tf.transpose(x, [1, 0, 2]),     # hs: [T, rows, H]
                             initializer=(h0, extra), parallel_iterations=1)
        if carry:
            self.carried.write(stream, hs[-1])
        outputs = tf.transpose(hs, [1, 0, 2])                           # [rows, T, H]
        temporal = tf.reduce_mean(tf.square(outputs[:, 1:] - outputs[:, :-1]), axis=[1, 2])
        temporal = tf.where(tf.shape(outputs)[1] > 1, temporal, tf.zeros_like(temporal))
        mask_o = self._mask(seed, stream, "dropout", rows, width, training)
        dropped = outputs if mask_o is None else outputs * mask_o[:, tf.newaxis]
        return {"logits": self._decode(dropped), "temporal": temporal,
                "activation": tf.reduce_mean(tf.square(dropped), axis=[1, 2])}, extras

    def _config(self):
        return {"vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "state_rows": self.state_rows, "seed": self.seed, **self.rates}


@keras.saving.register_keras_serializable(package="datanas")
class RNNLanguageModel(_LanguageModel):
    """A language model whose recurrent layer is a genotype's cell.

    Args:
      genotype: RecurrentGenotype (or its dict).
      vocab_size: V.
      hidden_size: embedding = hidden size (PTB paper: 850, WT2: 700).
      dropout, dropout_h, dropout_x, dropout_i: DARTS' dropout rates.
      state_rows: rows of the carried state (largest global batch).
      seed: initialiser seed.

    ``model(tokens)`` gives next-token logits [rows, T, V] from a zero state
    (no carried state; what the SavedModel serves).
    """

    def __init__(self, genotype, vocab_size, hidden_size=850, dropout=0.75, dropout_h=0.25,
                 dropout_x=0.75, dropout_i=0.2, state_rows=64, seed=None, **kwargs):
        super().__init__(vocab_size, hidden_size, dropout=dropout, dropout_h=dropout_h,
                         dropout_x=dropout_x, dropout_i=dropout_i, state_rows=state_rows,
                         seed=seed, **kwargs)
        self.cell = RecurrentCell(genotype, hidden_size, seed=seed, name="cell")
        self.cell.build((None, hidden_size))
        self.genotype = self.cell.genotype
        self.built = True   # every weight exists; token windows of any length

    def build(self, input_shape=None):
        self.built = True

    def forward(self, inputs, training=False, carry=True):
        def step(x_t, h, x_mask, h_mask):
            return self.cell.step(x_t, h, x_mask, h_mask, training=training), tf.zeros([])

        return self._run(inputs, step, training, tf.zeros([]), carry=carry)[0]

    def call(self, tokens, training=False):
        return self.forward({"tokens": tokens}, training=False, carry=False)["logits"]

    def get_config(self):
        return {**super().get_config(), **self._config(), "genotype": self.genotype.to_dict()}


@keras.saving.register_keras_serializable(package="datanas")
class RNNSearchModel(ResourceAwareSampling, _LanguageModel):
    """The supernet of the recurrent space (see ``datanas.spaces.base``).

    Architecture logits: one matrix per intermediate node, ``[i + 1, K]`` for
    the node at list position ``i`` (row j = input s_j, column k =
    activation k).  ``egs_scope="node"`` samples one EGS code over all of a
    node's (input, activation) pairs (DATA); ``"edge"`` one per input.

    Args (besides the language model's): num_nodes (DATA: 12), primitives,
    num_samples (M), egs_scope, weighting ("egs" or "softmax"), mode
    ("sparse" or "dense"), temperature, arch_init_scale, cost_lambda,
    egs_gradient ("full", default: undrawn pairs run forward only so their
    bits get gradient; "sampled": not computed; ``cells.py``), edge_combine
    ("mean", default: each (node, input) edge averages the activations its
    EGS code selects; "sum"; EGS codes only, DARTS' softmax is unchanged).

    Resource-aware search (``cost_lambda`` < 1, EGS only; shared with the
    conv supernet, ``datanas.spaces.resource_aware``): the estimator samples
    from p = lam * softmax(logits) + (1 - lam) * l, l a fixed efficiency
    credit per node (one non-trainable, checkpointed ``credit_node<i>``
    matrix per logit matrix; uniform until ``set_efficiency_credit``).
    ``sampling_logits`` (log p) is what sampling, inference codes,
    derivation and the probabilities file read.
    """

    def __init__(self, vocab_size, hidden_size=300, num_nodes=12, primitives=RNN_PRIMITIVES,
                 num_samples=4, egs_scope="node", weighting="egs", mode="sparse",
                 temperature=5.0, arch_init_scale=1e-3, dropout=0.75, dropout_h=0.25,
                 dropout_x=0.75, dropout_i=0.2, state_rows=256, seed=None,
                 bn_momentum=0.1, cost_lambda=1.0, egs_gradient="full", edge_combine="mean",
                 **kwargs):
        super().__init__(vocab_size, hidden_size, dropout=dropout, dropout_h=dropout_h,
                         dropout_x=dropout_x, dropout_i=dropout_i, state_rows=state_rows,
                         seed=seed, **kwargs)
        if egs_scope not in EGS_SCOPES:
            raise ValueError(f"egs_scope must be one of {', '.join(EGS_SCOPES)}; "
                             f"got {egs_scope!r}.")
        if not estimator_class(weighting).binary_codes and mode == "sparse":
            raise ValueError(f"weighting={weighting!r} gives every pair a non-zero weight; "
                             "use mode='dense'.")
        if edge_combine not in EDGE_COMBINES:
            raise ValueError(f"edge_combine must be one of {', '.join(EDGE_COMBINES)}; "
                             f"got {edge_combine!r}.")
        self.egs_gradient, self.edge_combine = egs_gradient, edge_combine
        self._init_cost_lambda(cost_lambda, weighting)
        self.primitives = check_rnn_primitives(primitives)
        self.num_nodes, self.num_samples, self.egs_scope = num_nodes, num_samples, egs_scope
        self.weighting, self.mode, self.arch_init_scale = weighting, mode, arch_init_scale
        self.bn_momentum = bn_momentum
        self.estimator = make_estimator(weighting, num_samples=num_samples,
                                        temperature=temperature, seed=seed, name="estimator")
        self.cell = SearchRecurrentCell(hidden_size, num_nodes, self.primitives, mode=mode,
                                        seed=seed, egs_gradient=egs_gradient, name="cell")
        self.cell.build((None, hidden_size))
        initializer = keras.initializers.RandomNormal(stddev=arch_init_scale, seed=seed)
        self.arch_logits = []
        for position in range(num_nodes):
            variable = self.add_weight(shape=(position + 1, len(self.primitives)),
                                       initializer=initializer, name=f"arch_node{position + 1}")
            setattr(self, f"arch_node{position + 1}", variable)
            self.arch_logits.append(variable)
        # Efficiency credits: constants of the run, saved in its checkpoints.
        self.credit = []
        if self.cost_lambda < 1.0:
            for position in range(num_nodes):
                self.credit.append(self._add_credit(f"credit_node{position + 1}",
                                                    (position + 1, len(self.primitives))))
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    @property
    def architecture_variables(self):
        return list(self.arch_logits)

    @property
    def network_variables(self):
        arch = {id(v) for v in self.arch_logits}
        return [v for v in self.trainable_variables if id(v) not in arch]

    def sampling_logits(self, position):
        """Logits the estimator samples node `position` from, flattened to
        ``[(position + 1) * K]`` for the node scope: the learned logits, or
        log p of the resource-aware mixture."""
        credit = self.credit[position] if self.cost_lambda < 1.0 else None
        return self._scope_sampling_logits(self.arch_logits[position], credit)

    def combine(self, code):
        """A node's EGS code as the cell weighs it (``combine_edge_code``);
        softmax weights unchanged."""
        if not self.estimator.binary_codes:
            return code
        return combine_edge_code(code, self.primitives, self.edge_combine)

    def edge_weights(self, stochastic, seed=None):
        """One weight matrix [i + 1, K] per node (a sample when `stochastic`),
        combined per edge (``combine``)."""
        weights = []
        for position, logits in enumerate(self.arch_logits):
            flat = self.egs_scope == "node"
            values = self.sampling_logits(position)
            if stochastic:
                node_seed = None if seed is None else tf.random.experimental.stateless_fold_in(
                    tf.cast(seed, tf.int64), position)
                out = self.estimator.sample(values, seed=node_seed)
            else:
                out = self.estimator.deterministic_code(values)
            weights.append(self.combine(tf.reshape(out, tf.shape(logits)) if flat else out))
        return weights

    def forward(self, inputs, edge_weights, training=False, carry=True):
        moments_shape = [self.num_nodes + 1, 2, self.hidden_size]

        def step(x_t, h, x_mask, h_mask):
            h, moments = self.cell.step(x_t, h, edge_weights, x_mask, h_mask, training=training)
            return h, (moments if training else tf.zeros(moments_shape))

        outputs, moments = self._run(inputs, step, training, tf.zeros(moments_shape),
                                     carry=carry)
        if training:
            self.cell.update_moving_statistics(moments, self.bn_momentum)
        return outputs

    def call(self, tokens, training=False):
        outputs = self.forward({"tokens": tokens}, self.edge_weights(stochastic=False),
                               training=False, carry=False)
        return outputs["logits"]

    def get_config(self):
        temperature = getattr(self.estimator, "temperature", None)
        config = {**super().get_config(), **self._config(), "num_nodes": self.num_nodes,
                  "primitives": list(self.primitives), "num_samples": self.num_samples,
                  "egs_scope": self.egs_scope, "weighting": self.weighting, "mode": self.mode,
                  "temperature": 5.0 if temperature is None else float(temperature.numpy()),
                  "arch_init_scale": self.arch_init_scale, "bn_momentum": self.bn_momentum,
                  "egs_gradient": self.egs_gradient, "edge_combine": self.edge_combine}
        # Only when set: search_config.json of runs made before resource-aware
        # sampling has no cost_lambda, and a resume compares the two configs.
        if self.cost_lambda < 1.0:
            config["cost_lambda"] = self.cost_lambda
        return config
