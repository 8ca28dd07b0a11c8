"""The deployment phase: traffic routing, the prediction log, the model server, and `phase`, what the deployment notebook runs."""
