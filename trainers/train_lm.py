"""Train a found recurrent cell as a word-level language model (PTB or WT2).

    python -m trainers.train_ptb --genotype=runs/ptb_m4/genotype.json --data_dir=data/penn \
        --model_dir=runs/ptb_eval
    python -m trainers.train_wt2 --genotype=runs/ptb_m4 --data_dir=data/wikitext-2 \
        --model_dir=runs/wt2_eval
    python -m trainers.train_lm --dataset=wt2 ...   (the same program)

Defaults are the paper's recipe (Section 4.2; the rest from DARTS'
rnn/train.py): one recurrent layer, embedding = hidden = 850 on PTB (700 on
WT2), batch 64, SGD 20 with NT-ASGD, gradient clip 0.25, weight decay 8e-7
(5e-7 on WT2), the DARTS dropouts (hidden 0.15 on WT2), variable BPTT
around 35, validation batch 10, test batch 1.  Validation and test
perplexity are reported every epoch; the best checkpoint is chosen on
validation and its test perplexity is the result (results.json).
"""

import sys

from absl import app
from absl import flags as absl_flags

from flags import core as flags_core
from flags import lm as flags_lm

FLAGS = absl_flags.FLAGS


def define_flags(default_dataset):
    flags_core.define_run_flags()
    flags_lm.define_lm_data_flags(default_dataset=default_dataset, default_batch_size=64)
    flags_lm.define_lm_train_flags()
    flags_core.define_distribution_flags()


def main(argv):
    del argv
    flags_core.quiet_logging(FLAGS)
    applied = flags_core.apply_preset(FLAGS, flags_lm.LM_TRAIN_PRESETS)

    from data_tf.image_datasets import DatasetNotFoundError
    from data_tf.lm_inputs import make_lm_train_inputs
    from data_tf.text_corpora import load_text_corpus
    from datanas.spaces.darts_rnn.genotype import GenotypeError, load_recurrent_genotype
    from datanas.spaces import get_space
    from datanas.training.lm_trainer import run_lm_training

    trainer = f"train_{FLAGS.dataset}"
    try:
        config = flags_lm.lm_train_config_from_flags(FLAGS)
        strategy = flags_core.strategy_from_flags(FLAGS)
        genotype = load_recurrent_genotype(FLAGS.genotype)
        corpus = load_text_corpus(FLAGS.dataset, FLAGS.data_dir)
        inputs = make_lm_train_inputs(
            corpus, batch_size=FLAGS.batch_size, eval_batch_size=FLAGS.eval_batch_size,
            test_batch_size=FLAGS.test_batch_size, bptt=FLAGS.bptt, seed=FLAGS.seed,
            train_tokens=FLAGS.train_tokens)
        inputs.distributed_steps_per_epoch(1, strategy.num_replicas_in_sync)
        # Decided before anything is built or written: new, resume, finished or refused.
        run = flags_core.prepare_training_run(
            FLAGS, trainer=trainer, strategy=strategy,
            inputs={"dataset": corpus.name, "sizes": inputs.sizes(),
                    "genotype": genotype.to_dict()})
        if run.finished:
            return
        with strategy.scope():
            model = get_space("darts_rnn").final_network(
                genotype, vocab_size=corpus.vocab_size,
                hidden_size=flags_lm.dataset_default(FLAGS, "hidden_size"),
                dropout=FLAGS.dropout, dropout_h=flags_lm.dataset_default(FLAGS, "dropout_h"),
                dropout_x=FLAGS.dropout_x, dropout_i=FLAGS.dropout_i,
                state_rows=max(FLAGS.batch_size, FLAGS.eval_batch_size, FLAGS.test_batch_size),
                seed=FLAGS.seed)
        run.begin()   # every setting is checked (the network is built): now files are written
    except (ValueError, GenotypeError, DatasetNotFoundError, ImportError) as error:
        sys.exit(f"{trainer}: error: {error}")

    print(f"Corpus {corpus.name} from {corpus.source}: {inputs.sizes()} tokens; "
          f"words of valid/test not in the training vocabulary: {corpus.unknown_counts}",
          flush=True)
    if applied:
        print(f"Preset {FLAGS.preset}: {applied}", flush=True)
    print(genotype.summary(), flush=True)
    print(f"{model.count_params():,} parameters (hidden {model.hidden_size}), "
          f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}).", flush=True)
    with flags_core.run_errors(trainer):
        run_lm_training(model, inputs, config, FLAGS.model_dir, strategy=strategy,
                        export_dir=FLAGS.export_dir,
                        checkpoint_every_steps=FLAGS.checkpoint_every_steps,
                        metadata={"dataset": corpus.name, "data_source": corpus.source,
                                  "genotype_file": FLAGS.genotype, "preset": FLAGS.preset})


if __name__ == "__main__":
    define_flags(default_dataset="ptb")
    app.run(main)
