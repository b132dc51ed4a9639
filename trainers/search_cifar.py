"""Architecture search on an image dataset: DATA (EGS) or a baseline.

    python -m trainers.search_cifar --preset=cpu --model_dir=/tmp/search
    python -m trainers.search_cifar --M=4 --dataset=cifar10 --model_dir=runs/s1
    python -m trainers.search_cifar --method=darts --darts_order=2 --model_dir=runs/d2
    python -m trainers.search_cifar --method=gdas --model_dir=runs/g1
    python -m trainers.search_cifar --method=random --random_candidates=8 --model_dir=runs/r1

Writes flags, per-epoch metrics, TensorBoard summaries, the derived
genotype(s) and the final architecture probabilities into --model_dir.
"""

import sys

from absl import app
from absl import flags as absl_flags

from flags import core as flags_core

flags_core.define_run_flags()
flags_core.define_image_data_flags(default_dataset="cifar10", default_batch_size=64)
flags_core.define_search_flags()
flags_core.define_distribution_flags()

FLAGS = absl_flags.FLAGS


def main(argv):
    del argv
    flags_core.quiet_logging(FLAGS)
    applied = flags_core.apply_preset(FLAGS, flags_core.SEARCH_PRESETS)
    # Heavy imports after flag parsing so --help is fast.
    from data_tf.image_datasets import DatasetNotFoundError, load_image_dataset
    from data_tf.search_inputs import make_search_inputs
    from datanas.api import SearchJob
    from datanas.searching.runs import resolve_method

    method_args = dict(search_mode=FLAGS.search_mode,
                       derivation=FLAGS.derivation, darts_order=int(FLAGS.darts_order),
                       random_candidates=FLAGS.random_candidates,
                       random_epochs=FLAGS.random_epochs)
    try:
        base_config, shape = flags_core.search_config_from_flags(FLAGS)
        _, config = resolve_method(FLAGS.method, base_config, shape, space=FLAGS.space,
                                   **method_args)
        strategy = flags_core.strategy_from_flags(FLAGS)
        dataset = load_image_dataset(FLAGS.dataset, FLAGS.data_dir, image_size=FLAGS.image_size)
        inputs = make_search_inputs(
            dataset, batch_size=FLAGS.batch_size, train_size=FLAGS.train_size,
            validation_fraction=FLAGS.validation_fraction,
            separate_arch_split=config.search_mode == "alternate", seed=FLAGS.seed)
        # Decided before anything is built or written: new, resume, finished or refused.
        run = flags_core.prepare_search_run(
            FLAGS, trainer="search_cifar", strategy=strategy,
            inputs={"dataset": dataset.name, "sizes": inputs.sizes()})
        if run.finished:
            return
        job = SearchJob(FLAGS.method, dataset, inputs, base_config, shape, space=FLAGS.space,
                        method_args=method_args, strategy=strategy)
        model, config = job.build(), job.config
        run.begin()   # every setting is checked (the supernet is built): now files are written
    except (ValueError, DatasetNotFoundError, ImportError) as error:
        sys.exit(f"search_cifar: error: {error}")

    print(f"Dataset {dataset.name} from {dataset.source}: {inputs.sizes()} "
          f"(test split not used by the search)", flush=True)
    if applied:
        print(f"Preset {FLAGS.preset}: {applied}", flush=True)
    print(f"Method {FLAGS.method}: {FLAGS.layers} cells, C={FLAGS.init_channels}, "
          f"M={model.num_samples}, scope={model.egs_scope}, weighting={model.weighting}, "
          f"search_mode={config.search_mode}, unrolled={config.unrolled}, "
          f"derivation={config.derivation}, {model.count_params():,} parameters, "
          f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}).", flush=True)
    if getattr(model, "cost_metric", None):
        print(f"Resource-aware sampling: cost={model.cost_metric}, lambda={model.cost_lambda} "
              f"(p = lambda * softmax(logits) + (1 - lambda) * efficiency credit).", flush=True)
    for metric, (limit, fixed, _) in getattr(model, "budgets", {}).items():
        layers, channels = shape.final_network
        print(f"Budget: {metric} of the final network ({layers} cells, "
              f"C={channels}) <= {limit:,.0f}; {fixed:,.0f} of it outside the "
              f"cells' ops; expected now {float(model.expected_final_cost(metric)):,.0f}.",
              flush=True)
    with flags_core.run_errors("search_cifar"):
        job.run(FLAGS.model_dir, checkpoint_every_steps=FLAGS.checkpoint_every_steps,
                metadata={"preset": FLAGS.preset})


if __name__ == "__main__":
    app.run(main)
