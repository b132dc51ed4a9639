"""Paper ablations on a small budget: Table 8 (gap), Table 5 (M), Table 7 (seeds).

    python -m trainers.ablations --ablation=gap --preset=ablation --model_dir=/tmp/ab_gap
    python -m trainers.ablations --ablation=num_samples --M_values=1,2,4,7 \\
        --preset=ablation --model_dir=/tmp/ab_m
    python -m trainers.ablations --ablation=seeds --methods=data,darts,gdas,random \\
        --seeds=0,1,2 --preset=ablation --model_dir=/tmp/ab_seeds
    python -m trainers.ablations --ablation=seeds --methods=data,data_sampled,random \\
        --retrain_rule=darts --seeds=0,1,2 --preset=ablation --model_dir=/tmp/ab_seeds

Every search is a normal search run under --model_dir/runs/<name> (rerunning
the command resumes: finished runs are read back).  When every run is done,
writes <ablation>.csv, <ablation>.png, <ablation>_summary.json (.csv, .md) and the
command's flags (<ablation>.flags.json, <ablation>.flagfile.txt) into
--model_dir (<ablation>_<rule>_rule.* with --retrain_rule).  With
--finished_only nothing is searched or trained: the table is made of the runs
already finished, and the summary names the others.
"""

import sys

from absl import app
from absl import flags as absl_flags

from flags import core as flags_core

flags_core.define_run_flags()
flags_core.define_image_data_flags(default_dataset="fashion_mnist", default_batch_size=64)
flags_core.define_search_flags()
flags_core.define_ablation_flags()
flags_core.define_thread_flags()

FLAGS = absl_flags.FLAGS


def _integers(name, values):
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(f"--{name} must be a comma-separated list of integers, got "
                         f"{','.join(values)!r}.") from None


def main(argv):
    del argv
    flags_core.quiet_logging(FLAGS)
    applied = flags_core.apply_preset(FLAGS, flags_core.SEARCH_PRESETS)
    from data_tf.image_datasets import DatasetNotFoundError, load_image_dataset
    from datanas.analysis.ablations import (RetrainSettings, SearchData, ablation_table_name,
                                            parse_method)
    from datanas.engine.run_identity import check_output_dir
    from trainers.ablation_runner import ablation_specs, run_ablation

    try:
        flags_core.threads_from_flags(FLAGS)
        base_config, shape = flags_core.search_config_from_flags(FLAGS)
        for token in FLAGS.methods:
            try:
                parse_method(token, FLAGS.M)
            except ValueError as error:
                raise ValueError(f"--methods: {error}") from None
        seeds = _integers("seeds", FLAGS.seeds)
        m_values = _integers("M_values", FLAGS.M_values) if FLAGS.M_values else None
        try:
            lambda_values = [float(v) for v in FLAGS.lambda_values]
        except ValueError:
            raise ValueError(f"--lambda_values must be a comma-separated list of numbers in "
                             f"[0, 1], got {','.join(FLAGS.lambda_values)!r}.") from None
        retrain = RetrainSettings(layers=FLAGS.retrain_layers,
                                  init_channels=FLAGS.retrain_channels,
                                  epochs=FLAGS.retrain_epochs, batch_size=FLAGS.batch_size,
                                  learning_rate=FLAGS.retrain_learning_rate,
                                  train_size=FLAGS.retrain_train_size)
        data = SearchData(batch_size=FLAGS.batch_size, train_size=FLAGS.train_size,
                          validation_fraction=FLAGS.validation_fraction)
        dataset = load_image_dataset(FLAGS.dataset, FLAGS.data_dir, image_size=FLAGS.image_size)
        check_output_dir(FLAGS.model_dir)
    except (ValueError, DatasetNotFoundError, ImportError) as error:
        sys.exit(f"ablations: error: {error}")
    if applied:
        print(f"Preset {FLAGS.preset}: {applied}", flush=True)
    # One output directory may hold several ablations (they share runs): each
    # writes its own table and flag files; every run below has its own identity.
    table = ablation_table_name(FLAGS.ablation, FLAGS.retrain_rule)
    try:   # every setting checked before anything runs
        ablation_specs(FLAGS.ablation, base_config=base_config, shape=shape,
                       methods=FLAGS.methods, m_values=m_values, seeds=seeds, retrain=retrain,
                       lambda_values=lambda_values, retrain_rule=FLAGS.retrain_rule)
    except ValueError as error:
        sys.exit(f"ablations: error: {error}")
    try:
        with flags_core.run_errors("ablations"):   # SIGTERM: one line, exit 143
            rows, summary = run_ablation(
                FLAGS.ablation, dataset, FLAGS.model_dir, base_config=base_config,
                shape=shape, data=data, methods=FLAGS.methods, m_values=m_values, seeds=seeds,
                retrain=retrain, random_candidates=FLAGS.random_candidates,
                bn_recalibration_batches=FLAGS.bn_recalibration_batches,
                lambda_values=lambda_values, retrain_rule=FLAGS.retrain_rule,
                image_size=FLAGS.image_size, finished_only=FLAGS.finished_only)
    except (ValueError, ImportError) as error:
        sys.exit(f"ablations: error: {error}")
    # Written with the table, not before it: <table>.csv/.png/_summary.json and
    # <table>.flags.json/.flagfile.txt always describe the same command (a
    # stopped or refused rerun, or a process given a subset of the seeds that
    # does not finish, leaves the finished table's record as it was).
    flags_core.write_flags(FLAGS, FLAGS.model_dir, prefix=f"{table}.")
    print(f"\n{table}: {len(rows)} run(s); CSV, PNG and summary in {FLAGS.model_dir}")
    for key, value in summary.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    app.run(main)
