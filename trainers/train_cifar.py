"""Train a found cell from scratch on CIFAR-10 / Fashion-MNIST / digits.

    python -m trainers.train_cifar --genotype=runs/search/genotype.json --model_dir=runs/eval

Defaults are the paper's CIFAR-10 recipe (600 epochs, batch 96, C=36, 20 cells,
cutout 16, drop-path 0.2, auxiliary weight 0.4).  Test accuracy/error is
reported every epoch (--notest_each_epoch: after the last epoch only); with
--validation_fraction > 0 a validation split is carved from the training images
and picks the best checkpoint.  --stem_stride=2 runs the cells at half the
resolution (28x28 Fashion-MNIST -> 14x14).
"""

import sys

from absl import app
from absl import flags as absl_flags

from flags import core as flags_core

flags_core.define_run_flags()
flags_core.define_image_data_flags(default_dataset="cifar10", default_batch_size=96)
flags_core.define_train_flags(epochs=600, learning_rate=0.025,
                              weight_decay=3e-4, init_channels=36, layers=20, cutout=16)
flags_core.define_cifar_train_flags()
flags_core.define_distribution_flags()
flags_core.define_preset_flag(flags_core.TRAIN_PRESETS)
absl_flags.FLAGS.set_default("validation_fraction", 0.0)

FLAGS = absl_flags.FLAGS


def main(argv):
    del argv
    flags_core.quiet_logging(FLAGS)
    applied = flags_core.apply_preset(FLAGS, flags_core.TRAIN_PRESETS)

    from data_tf.image_datasets import DatasetNotFoundError, load_image_dataset
    from data_tf.train_inputs import make_train_inputs
    from datanas.spaces.darts_cnn.genotype import GenotypeError, load_genotype
    from datanas.core.model_stats import count_multiply_adds, count_parameters
    from datanas.api import TrainJob

    try:
        config = flags_core.train_config_from_flags(FLAGS)
        strategy = flags_core.strategy_from_flags(FLAGS)
        genotype = load_genotype(FLAGS.genotype)
        dataset = load_image_dataset(FLAGS.dataset, FLAGS.data_dir, image_size=FLAGS.image_size)
        inputs = make_train_inputs(dataset, batch_size=FLAGS.batch_size,
                                   train_size=FLAGS.train_size,
                                   validation_fraction=FLAGS.validation_fraction,
                                   cutout=FLAGS.cutout, seed=FLAGS.seed)
        # Decided before anything is built or written: new, resume, finished or refused.
        run = flags_core.prepare_training_run(
            FLAGS, trainer="train_cifar", strategy=strategy,
            inputs={"dataset": dataset.name, "sizes": inputs.sizes(),
                    "genotype": genotype.to_dict()})
        if run.finished:
            return
        job = TrainJob(genotype, dataset, inputs, config, setting="cifar", strategy=strategy,
                       init_channels=FLAGS.init_channels, layers=FLAGS.layers,
                       auxiliary=FLAGS.auxiliary, stem_stride=int(FLAGS.stem_stride))
        model = job.build()
        run.begin()   # every setting is checked (the network is built): now files are written
    except (GenotypeError, ValueError, DatasetNotFoundError, ImportError) as error:
        sys.exit(f"train_cifar: error: {error}")

    params = count_parameters(model)
    mult_adds = count_multiply_adds(model, dataset.image_shape)
    print(f"Dataset {dataset.name} from {dataset.source}: {inputs.sizes()}", flush=True)
    if applied:
        print(f"Preset {FLAGS.preset}: {applied}", flush=True)
    print(genotype.summary(), flush=True)
    print(f"NetworkCIFAR: {FLAGS.layers} cells, C={FLAGS.init_channels}, stem stride "
          f"{FLAGS.stem_stride}: {params / 1e6:.3f}M "
          f"parameters (auxiliary head excluded), {mult_adds / 1e6:.1f}M multiply-adds", flush=True)
    with flags_core.run_errors("train_cifar"):
        job.run(FLAGS.model_dir, include_test=FLAGS.test_each_epoch,
                test_at_end=not FLAGS.test_each_epoch, export_dir=FLAGS.export_dir,
                global_batch_size=FLAGS.batch_size,
                checkpoint_every_steps=FLAGS.checkpoint_every_steps,
                metadata={"genotype": genotype.to_dict(), "parameters": params,
                          "multiply_adds": mult_adds})


if __name__ == "__main__":
    app.run(main)
