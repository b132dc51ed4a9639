"""Train a recurrent genotype on WikiText-2 (trainers.train_lm with --dataset=wt2)."""

from absl import app

from trainers import train_lm

if __name__ == "__main__":
    train_lm.define_flags(default_dataset="wt2")
    app.run(train_lm.main)
