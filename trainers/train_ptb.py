"""Train a recurrent genotype on Penn Treebank (trainers.train_lm with --dataset=ptb)."""

from absl import app

from trainers import train_lm

if __name__ == "__main__":
    train_lm.define_flags(default_dataset="ptb")
    app.run(train_lm.main)
