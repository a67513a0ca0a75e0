"""What every layer reads: the styles.csv schema, the table of the run's models, errors, atomic files, the cache,
fastai/torch overrides."""
