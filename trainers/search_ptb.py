"""Recurrent-cell search for language modelling (DATA paper Section 4.2).

    python -m trainers.search_ptb --preset=cpu --data_dir=data/penn --model_dir=/tmp/rnn_search
    python -m trainers.search_ptb --M=4 --data_dir=data/penn --model_dir=runs/ptb_m4
    python -m trainers.search_ptb --method=darts --data_dir=data/penn --model_dir=runs/ptb_darts
    python -m trainers.search_ptb --cost=madds --data_dir=data/penn --model_dir=runs/ptb_madds

Searches one recurrent cell (12 nodes, activations none/tanh/relu/sigmoid/
identity) on the training split of PTB (or WT2 with --dataset=wt2); the
search's validation stream is the last 10% of the training tokens, so the
corpus' validation and test splits stay unseen until the trained cell is
evaluated (trainers.train_ptb).  Writes flags, per-epoch metrics
(valid perplexity, architecture entropy), TensorBoard summaries, the derived
genotype(s) and the architecture probabilities into --model_dir; a rerun
resumes (exactly, also mid-epoch) or reports the finished run.

--cost / --cost_lambda: resource-aware sampling (README "Resource-aware
search"); search_cifar's budgets (--max_params, ...) are refused.
"""

import sys

from absl import app
from absl import flags as absl_flags

from flags import core as flags_core
from flags import lm as flags_lm

flags_core.define_run_flags()
flags_lm.define_lm_data_flags(default_dataset="ptb", default_batch_size=256)
flags_lm.define_lm_search_flags()
flags_core.define_distribution_flags()

FLAGS = absl_flags.FLAGS


def main(argv):
    del argv
    flags_core.quiet_logging(FLAGS)
    applied = flags_core.apply_preset(FLAGS, flags_lm.LM_SEARCH_PRESETS)

    from data_tf.image_datasets import DatasetNotFoundError
    from data_tf.lm_inputs import make_lm_search_inputs
    from data_tf.text_corpora import load_text_corpus
    from datanas.searching.runs import build_search, resolve_method, run_method_search
    from datanas.tasks import LanguageModelingTask

    method_args = dict(space="darts_rnn", search_mode=FLAGS.search_mode,
                       derivation=FLAGS.derivation, darts_order=int(FLAGS.darts_order),
                       random_candidates=FLAGS.random_candidates,
                       random_epochs=FLAGS.random_epochs)
    try:
        base_config, shape = flags_lm.lm_search_config_from_flags(FLAGS)
        strategy = flags_core.strategy_from_flags(FLAGS)
        corpus = load_text_corpus(FLAGS.dataset, FLAGS.data_dir)
        _, config = resolve_method(FLAGS.method, base_config, shape, **method_args)
        inputs = make_lm_search_inputs(
            corpus, batch_size=FLAGS.batch_size, eval_batch_size=FLAGS.eval_batch_size,
            bptt=FLAGS.bptt, separate_arch_split=config.search_mode == "alternate",
            train_tokens=FLAGS.train_tokens, seed=FLAGS.seed)
        flags_lm.check_bptt_fits(inputs, FLAGS.bptt, "more --train_tokens (the validation "
                                 "stream is their last 10%)")
        inputs.distributed_steps_per_epoch(1, strategy.num_replicas_in_sync)
        # Decided before anything is built or written: new, resume, finished or refused.
        run = flags_core.prepare_search_run(
            FLAGS, trainer="search_ptb", strategy=strategy,
            inputs={"dataset": corpus.name, "sizes": inputs.sizes()})
        if run.finished:
            return
        model, config = build_search(FLAGS.method, corpus.vocab_size, None, base_config, shape,
                                     strategy=strategy, **method_args)
        task = LanguageModelingTask(temporal_weight=FLAGS.temporal_weight)
        run.begin()   # every setting is checked (the supernet is built): now files are written
    except (ValueError, DatasetNotFoundError, ImportError) as error:
        sys.exit(f"search_ptb: error: {error}")

    print(f"Corpus {corpus.name} from {corpus.source}: {inputs.sizes()} tokens (search "
          f"validation = end of the training split; valid/test splits unused)", flush=True)
    if applied:
        print(f"Preset {FLAGS.preset}: {applied}", flush=True)
    print(f"Method {FLAGS.method}: recurrent cell of {shape.num_nodes} nodes, "
          f"{shape.hidden_size} units, M={model.num_samples}, scope={model.egs_scope}, "
          f"weighting={model.weighting}, search_mode={config.search_mode}, "
          f"{model.count_params():,} parameters, {strategy.num_replicas_in_sync} replica(s) "
          f"({type(strategy).__name__}).", flush=True)
    if getattr(model, "cost_metric", None):
        print(f"Resource-aware sampling: cost={model.cost_metric}, lambda={model.cost_lambda} "
              f"(p = lambda * softmax(logits) + (1 - lambda) * efficiency credit; a choice "
              f"costs its input times its node's map, {model.cost_terms.map:.4g}, plus its own "
              f"highway term).", flush=True)
    with flags_core.run_errors("search_ptb"):
        run_method_search(FLAGS.method, model, inputs, config, FLAGS.model_dir,
                          space="darts_rnn", random_candidates=FLAGS.random_candidates,
                          strategy=strategy, task=task,
                          checkpoint_every_steps=FLAGS.checkpoint_every_steps,
                          metadata={"dataset": corpus.name, "data_source": corpus.source,
                                    "preset": FLAGS.preset})


if __name__ == "__main__":
    app.run(main, flags_parser=flags_lm.parse_search_flags)
