"""The core every phase builds on: workspace paths, the MLMD store facade, parameters, step tracking, the pipeline runner, lineage, statistics and the step checks. Imports no phase."""
