"""Scoring a trained model on the test split and fitting what it answers with on the holdout."""
