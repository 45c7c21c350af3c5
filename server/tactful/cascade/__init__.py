"""The CDHF show/hide cascade: features, the stage-1/stage-2 gate, the model and its training."""
