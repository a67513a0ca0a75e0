"""What a model answers with: temperatures, the zero-shot path and its gate, as recorded in the model's JSON."""
