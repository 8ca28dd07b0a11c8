"""The data phase: ingestion, data rules, labels, augmentation, validation (the TFDV facade), and `phase`, what the data notebook runs."""
