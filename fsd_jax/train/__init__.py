"""Training: state, optimiser, the jitted step, the loop, checkpoints and stages."""
