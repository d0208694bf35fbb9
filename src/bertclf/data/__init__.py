"""The data layer: where datasets and encoders come from, reading, splitting, tokenizing, and
the stores and batches models read."""
