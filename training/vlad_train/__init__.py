"""Training pipeline of the default vlad model: demonstrations -> future-state-aware
flow matching + language -> a MODEL.md checkpoint. See training/README.md."""
