"""Train a found cell from scratch on CIFAR-10 / Fashion-MNIST / digits.

    python -m trainers.train_cifar --genotype=runs/search/genotype.json --model_dir=runs/eval

Defaults are the paper's CIFAR-10 recipe (600 epochs, batch 96, C=36, 20 cells,
cutout 16, drop-path 0.2, auxiliary weight 0.4).  Test accuracy/error is
reported every epoch; with --validation_fraction > 0 a validation split is
carved from the training images and picks the best checkpoint.
"""

import sys

from absl import app
from absl import flags as absl_flags
from absl import logging

from flags import core as flags_core

flags_core.define_run_flags()
flags_core.define_image_data_flags(default_dataset="cifar10", default_batch_size=96)
flags_core.define_train_flags(epochs=600, learning_rate=0.025,
                              weight_decay=3e-4, init_channels=36, layers=20, cutout=16)
flags_core.define_distribution_flags()
absl_flags.FLAGS.set_default("validation_fraction", 0.0)

FLAGS = absl_flags.FLAGS


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    import keras

    from data_tf.image_datasets import DatasetNotFoundError, load_image_dataset
    from data_tf.image_pipelines import make_image_pipeline
    from data_tf.search_inputs import default_augment
    from data_tf.splits import take_subset, train_validation_split
    from datanas.genotypes import GenotypeError, load_genotype
    from datanas.model_stats import count_multiply_adds, count_parameters
    from datanas.networks import NetworkCIFAR
    from datanas.training import run_training

    try:
        strategy = flags_core.strategy_from_flags(FLAGS)
        keras.utils.set_random_seed(FLAGS.seed)
        genotype = load_genotype(FLAGS.genotype)
        config = flags_core.train_config_from_flags(FLAGS)
        dataset = load_image_dataset(FLAGS.dataset, FLAGS.data_dir)
        images, labels = take_subset(dataset.train_images, dataset.train_labels,
                                     FLAGS.train_size, FLAGS.seed)
        valid = None
        if FLAGS.validation_fraction > 0:
            train_idx, valid_idx = train_validation_split(len(labels), FLAGS.validation_fraction,
                                                          FLAGS.seed)
            valid = (images[valid_idx], labels[valid_idx])
            images, labels = images[train_idx], labels[train_idx]
        if len(labels) < FLAGS.batch_size:
            raise ValueError(f"{len(labels)} training images but --batch_size={FLAGS.batch_size}.")
        with strategy.scope():
            model = NetworkCIFAR(genotype, num_classes=dataset.num_classes,
                                 init_channels=FLAGS.init_channels, layers=FLAGS.layers,
                                 auxiliary=FLAGS.auxiliary)
            model.build((None,) + dataset.image_shape)
    except (GenotypeError, ValueError, DatasetNotFoundError, ImportError) as error:
        sys.exit(f"train_cifar: error: {error}")

    augment = default_augment(dataset, cutout_size=FLAGS.cutout)

    def train_data(epoch, context):
        return make_image_pipeline(images, labels, batch_size=FLAGS.batch_size, training=True,
                                   mean=dataset.mean, std=dataset.std, augment=augment,
                                   seed=FLAGS.seed, epoch=epoch, drop_remainder=True,
                                   input_context=context)

    def eval_data(split_images, split_labels):
        return lambda context: make_image_pipeline(
            split_images, split_labels, batch_size=FLAGS.batch_size, training=False,
            mean=dataset.mean, std=dataset.std, input_context=context)

    eval_sets = {}
    if valid is not None:
        eval_sets["valid"] = eval_data(*valid)
    eval_sets["test"] = eval_data(dataset.test_images, dataset.test_labels)
    params = count_parameters(model)
    mult_adds = count_multiply_adds(model, dataset.image_shape)
    print(f"Dataset {dataset.name} from {dataset.source}: {len(labels)} train, "
          f"{0 if valid is None else len(valid[1])} valid, {len(dataset.test_labels)} test", flush=True)
    print(genotype.summary(), flush=True)
    print(f"NetworkCIFAR: {FLAGS.layers} cells, C={FLAGS.init_channels}: {params / 1e6:.3f}M "
          f"parameters (auxiliary head excluded), {mult_adds / 1e6:.1f}M multiply-adds", flush=True)
    flags_core.write_flags(FLAGS, FLAGS.model_dir)
    run_training(model, train_data, eval_sets, config, FLAGS.model_dir,
                 strategy=strategy, global_batch_size=FLAGS.batch_size,
                 steps_per_epoch=len(labels) // FLAGS.batch_size,
                 image_shape=dataset.image_shape, select_on="valid" if valid is not None else None,
                 export_dir=FLAGS.export_dir,
                 metadata={"dataset": dataset.name, "genotype": genotype.to_dict(),
                           "parameters": params, "multiply_adds": mult_adds})


if __name__ == "__main__":
    app.run(main)
