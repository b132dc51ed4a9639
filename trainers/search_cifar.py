"""Architecture search with DATA / EGS on an image dataset.

    python -m trainers.search_cifar --preset=cpu --model_dir=/tmp/search
    python -m trainers.search_cifar --M=4 --dataset=cifar10 --model_dir=runs/s1

Writes flags, per-epoch metrics, TensorBoard summaries, the derived
genotype(s) and the final architecture probabilities into --model_dir.
"""

import sys

from absl import app
from absl import flags as absl_flags
from absl import logging

from flags import core as flags_core

flags_core.define_run_flags()
flags_core.define_image_data_flags(default_dataset="cifar10", default_batch_size=64)
flags_core.define_search_flags()
flags_core.define_distribution_flags()

FLAGS = absl_flags.FLAGS


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    applied = flags_core.apply_preset(FLAGS, flags_core.SEARCH_PRESETS)
    # Heavy imports after flag parsing so --help is fast.
    from data_tf.image_datasets import DatasetNotFoundError, load_image_dataset
    from data_tf.search_inputs import make_search_inputs
    from datanas.search import SearchConfig, SearchPreempted, run_search
    from datanas.search_network import SearchNetwork
    import keras

    try:
        config = SearchConfig(
            epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate,
            learning_rate_min=FLAGS.learning_rate_min, momentum=FLAGS.momentum,
            weight_decay=FLAGS.weight_decay, grad_clip=FLAGS.grad_clip,
            arch_learning_rate=FLAGS.arch_learning_rate,
            arch_weight_decay=FLAGS.arch_weight_decay,
            initial_temperature=FLAGS.initial_temperature,
            final_temperature=FLAGS.final_temperature, search_mode=FLAGS.search_mode,
            derivation=FLAGS.derivation, seed=FLAGS.seed)
        strategy = flags_core.strategy_from_flags(FLAGS)
        keras.utils.set_random_seed(FLAGS.seed)
        dataset = load_image_dataset(FLAGS.dataset, FLAGS.data_dir)
        inputs = make_search_inputs(
            dataset, batch_size=FLAGS.batch_size, train_size=FLAGS.train_size,
            validation_fraction=FLAGS.validation_fraction,
            separate_arch_split=FLAGS.search_mode == "alternate", seed=FLAGS.seed)
        with strategy.scope():
            model = SearchNetwork(
                dataset.num_classes, init_channels=FLAGS.init_channels, num_cells=FLAGS.layers,
                num_nodes=FLAGS.nodes, num_samples=FLAGS.M, egs_scope=FLAGS.egs_scope,
                temperature=FLAGS.initial_temperature, seed=FLAGS.seed)
            model.build((None,) + dataset.image_shape)
    except (ValueError, DatasetNotFoundError, ImportError) as error:
        sys.exit(f"search_cifar: error: {error}")

    print(f"Dataset {dataset.name} from {dataset.source}: {inputs.sizes()} "
          f"(test split not used by the search)", flush=True)
    if applied:
        print(f"Preset {FLAGS.preset}: {applied}", flush=True)
    flags_core.write_flags(FLAGS, FLAGS.model_dir)
    print(f"Search network: {FLAGS.layers} cells, C={FLAGS.init_channels}, M={FLAGS.M}, "
          f"scope={FLAGS.egs_scope}, {model.count_params():,} parameters, "
          f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}). Building the "
          f"training graph (one-time, can take a few minutes on CPU)...", flush=True)
    try:
        run_search(model, inputs, config, FLAGS.model_dir, strategy=strategy,
                   checkpoint_every_steps=FLAGS.checkpoint_every_steps,
                   metadata={"dataset": dataset.name, "data_source": dataset.source,
                             "preset": FLAGS.preset})
    except SearchPreempted as preempted:
        print(str(preempted), flush=True)
        sys.exit(143)


if __name__ == "__main__":
    app.run(main)
