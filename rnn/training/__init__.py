"""Training: the settings (`config`), the recipe, optimizers, the state a resume carries (`state`),
resuming (`resume`), the time budget's plan (`time_plan`) and the step loop (`loop`)."""
