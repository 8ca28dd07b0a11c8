"""The modeling phase: training, export (SavedModel and LiteRT), evaluation, blessing, and `phase`, what the modeling notebook runs."""
