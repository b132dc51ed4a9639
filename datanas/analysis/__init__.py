"""Pure pieces of the experiments: ablation tables, summaries and plots."""
