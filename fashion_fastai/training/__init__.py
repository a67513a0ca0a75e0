"""Training a run: its options (config.json), the steps of a run, the learners, checkpoints, several processes, the
saved models."""
