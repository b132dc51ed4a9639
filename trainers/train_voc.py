"""Semantic segmentation on PASCAL VOC 2012 with a found cell (paper Section 4.3).

    python -m trainers.train_voc --genotype=runs/search/genotype.json \
        --data_dir=/data/VOCdevkit --model_dir=runs/voc

The genotype's cells form the backbone of DeepLab v3 (output stride 16 or
8, ASPP, bilinear upsampling; datanas/spaces/darts_cnn/segmentation.py).
Defaults are DeepLab's recipe (flags/voc.py): crop 513, batch 16, poly
learning rate from 0.007, train_aug.  Every epoch evaluates VOC val on full
images and prints its mIoU; per-class IoU is in metrics.jsonl.  VOC val is
the split the paper reports, so no checkpoint is selected on it (the last
one is kept).  --preset=cpu is a few-minute CPU run.
"""

import sys

from absl import app
from absl import flags as absl_flags

from flags import core as flags_core
from flags import voc as flags_voc

flags_core.define_run_flags()
flags_voc.define_voc_flags()
flags_core.define_distribution_flags()

FLAGS = absl_flags.FLAGS


def main(argv):
    del argv
    flags_core.quiet_logging(FLAGS)
    applied = flags_core.apply_preset(FLAGS, flags_voc.VOC_TRAIN_PRESETS)
    import tensorflow as tf

    from data_tf.image_datasets import DatasetNotFoundError
    from data_tf.voc import IGNORE_LABEL, VOC_CLASSES, voc_file_error
    from data_tf.voc_inputs import make_voc_inputs
    from datanas.spaces.darts_cnn.genotype import GenotypeError, load_genotype
    from datanas.spaces import get_space
    from datanas.tasks import SegmentationTask
    from datanas.core.model_stats import count_parameters
    from datanas.training.trainer import run_training

    output_stride = int(FLAGS.output_stride)
    try:
        config = flags_voc.voc_train_config_from_flags(FLAGS)
        strategy = flags_core.strategy_from_flags(FLAGS)
        genotype = load_genotype(FLAGS.genotype)
        inputs = make_voc_inputs(FLAGS.data_dir, train_split=FLAGS.train_split,
                                 batch_size=FLAGS.batch_size, crop_size=FLAGS.crop_size,
                                 seed=FLAGS.seed, train_size=FLAGS.train_size,
                                 eval_size=FLAGS.eval_size)
        # Decided before anything is built or written: new, resume, finished or refused.
        run = flags_core.prepare_training_run(
            FLAGS, trainer="train_voc", strategy=strategy,
            inputs={"train_images": inputs.num_train, "val_images": inputs.num_val,
                    "genotype": genotype.to_dict()})
        if run.finished:
            return
        task = SegmentationTask(len(VOC_CLASSES), IGNORE_LABEL, class_names=VOC_CLASSES)
        with strategy.scope():
            model = get_space("darts_cnn").final_network(
                genotype, setting="segmentation", num_classes=len(VOC_CLASSES),
                init_channels=FLAGS.init_channels, layers=FLAGS.layers,
                output_stride=output_stride, aspp_channels=FLAGS.aspp_channels)
            model.build((None, None, None, 3))
        run.begin()   # every setting is checked (the network is built): now files are written
    except (GenotypeError, ValueError, DatasetNotFoundError, ImportError) as error:
        sys.exit(f"train_voc: error: {error}")

    params = count_parameters(model)
    print(f"VOC 2012 from {inputs.source}: {inputs.num_train} {FLAGS.train_split} images, "
          f"{inputs.num_val} val images", flush=True)
    if applied:
        print(f"Preset {FLAGS.preset}: {applied}", flush=True)
    print(genotype.summary(), flush=True)
    print(f"DeepLab v3 of the cells: {FLAGS.layers} cells, C={FLAGS.init_channels}, output "
          f"stride {output_stride}, ASPP {FLAGS.aspp_channels}: {params / 1e6:.3f}M parameters; "
          f"crops {FLAGS.crop_size}, batch {FLAGS.batch_size}, "
          f"{strategy.num_replicas_in_sync} replica(s)", flush=True)
    with flags_core.run_errors("train_voc"):
        try:
            run_training(model, inputs.train, {"val": inputs.val}, config, FLAGS.model_dir,
                         strategy=strategy, global_batch_size=FLAGS.batch_size,
                         steps_per_epoch=inputs.steps_per_epoch, image_shape=(None, None, 3),
                         select_on=None, export_dir=FLAGS.export_dir, task=task,
                         metadata={"data_source": inputs.source,
                                   "train_split": FLAGS.train_split,
                                   "batch_size": FLAGS.batch_size,
                                   "crop_size": FLAGS.crop_size,
                                   "output_stride": output_stride, "parameters": params,
                                   "preset": FLAGS.preset},
                         checkpoint_every_steps=FLAGS.checkpoint_every_steps)
        except tf.errors.OpError as error:
            message = voc_file_error(error)
            if message is None:
                raise
            sys.exit(f"train_voc: error: {message}")


if __name__ == "__main__":
    app.run(main)
