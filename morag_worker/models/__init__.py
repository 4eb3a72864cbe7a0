"""Model loading: the per-child cache and one loader module per model family."""
