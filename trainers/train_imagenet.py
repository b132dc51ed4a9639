"""Train a found cell on ImageNet in the mobile setting (paper Section 4.1).

    python -m trainers.train_imagenet --genotype=runs/search/genotype.json \
        --data_dir=/data/imagenet --model_dir=runs/imagenet

--data_dir is either a class-folder tree (<dir>/train/<class>/*.JPEG and
<dir>/val/<class>/*.JPEG) or a TFDS data_dir holding a prepared
`imagenet2012`.  Defaults are the paper recipe: 250 epochs, batch 128, 14 cells,
C=48, lr 0.1 with linear decay, weight decay 3e-5, label smoothing 0.1,
auxiliary loss 0.4.  Reports top-1/top-5 on the validation set each epoch and
whether the network meets the mobile setting (< 600M multiply-adds).
"""

import sys

from absl import app
from absl import flags as absl_flags

from flags import core as flags_core

flags_core.define_run_flags()
flags_core.define_train_flags(epochs=250, learning_rate=0.1, weight_decay=3e-5,
                              init_channels=48, layers=14, lr_schedule="linear",
                              label_smoothing=0.1)
flags_core.define_distribution_flags()
absl_flags.DEFINE_string("data_dir", None, "Class-folder ImageNet root or TFDS data_dir.")
absl_flags.DEFINE_integer("batch_size", 128, "Global batch size.", lower_bound=1)
absl_flags.DEFINE_integer("image_size", 224, "Input resolution (224 = mobile setting).",
                          lower_bound=16)
absl_flags.DEFINE_integer("train_size", None, "Use only this many training images.",
                          lower_bound=1)
absl_flags.DEFINE_integer("eval_size", None, "Use only this many validation images.",
                          lower_bound=1)
absl_flags.mark_flag_as_required("data_dir")
absl_flags.FLAGS.set_default("drop_path_prob", 0.0)

FLAGS = absl_flags.FLAGS


def main(argv):
    del argv
    flags_core.quiet_logging(FLAGS)

    from data_tf.image_datasets import DatasetNotFoundError
    from data_tf.imagenet_inputs import make_imagenet_inputs
    from datanas.spaces.darts_cnn.genotype import GenotypeError, load_genotype
    from datanas.spaces import get_space
    from datanas.core.model_stats import (IMAGENET_MOBILE_MULT_ADDS, count_multiply_adds,
                                              count_parameters)
    from datanas.training.trainer import run_training

    size = FLAGS.image_size
    try:
        config = flags_core.train_config_from_flags(FLAGS)
        strategy = flags_core.strategy_from_flags(FLAGS)
        genotype = load_genotype(FLAGS.genotype)
        inputs = make_imagenet_inputs(FLAGS.data_dir, batch_size=FLAGS.batch_size,
                                      image_size=size, seed=FLAGS.seed,
                                      train_size=FLAGS.train_size, eval_size=FLAGS.eval_size)
        # Decided before anything is built or written: new, resume, finished or refused.
        run = flags_core.prepare_training_run(
            FLAGS, trainer="train_imagenet", strategy=strategy,
            inputs={"train_images": inputs.num_train, "classes": inputs.num_classes,
                    "genotype": genotype.to_dict()})
        if run.finished:
            return
        with strategy.scope():
            model = get_space("darts_cnn").final_network(
                genotype, setting="imagenet", num_classes=inputs.num_classes,
                init_channels=FLAGS.init_channels, layers=FLAGS.layers,
                auxiliary=FLAGS.auxiliary)
            model.build((None, size, size, 3))
        run.begin()   # every setting is checked (the network is built): now files are written
    except (GenotypeError, ValueError, DatasetNotFoundError, ImportError) as error:
        sys.exit(f"train_imagenet: error: {error}")

    params = count_parameters(model)
    mult_adds = count_multiply_adds(model, (size, size, 3))
    mobile = "meets" if mult_adds < IMAGENET_MOBILE_MULT_ADDS else "EXCEEDS"
    print(f"ImageNet from {inputs.source}: {inputs.num_train} training images, "
          f"{inputs.num_classes} classes", flush=True)
    print(genotype.summary(), flush=True)
    print(f"NetworkImageNet: {FLAGS.layers} cells, C={FLAGS.init_channels}, {size}x{size}: "
          f"{params / 1e6:.3f}M parameters, {mult_adds / 1e6:.1f}M multiply-adds ({mobile} the "
          f"mobile setting of < 600M at 224x224)", flush=True)
    with flags_core.run_errors("train_imagenet"):
        run_training(model, inputs.train, {"valid": inputs.valid}, config, FLAGS.model_dir,
                     strategy=strategy, global_batch_size=FLAGS.batch_size,
                     steps_per_epoch=inputs.steps_per_epoch, image_shape=(size, size, 3),
                     select_on="valid", export_dir=FLAGS.export_dir,
                     metadata={"data_source": inputs.source, "batch_size": FLAGS.batch_size,
                               "image_size": size, "train_size": FLAGS.train_size,
                               "parameters": params, "multiply_adds": mult_adds,
                               "mobile_setting": mult_adds < IMAGENET_MOBILE_MULT_ADDS},
                     checkpoint_every_steps=FLAGS.checkpoint_every_steps)


if __name__ == "__main__":
    app.run(main)
