"""Training: the settings (`config`), the recipe, optimizers, the state a resume carries (`state`),
resuming (`resume`), the time budget's plan (`time_plan`), Ctrl-C while training (`interrupt`)
and the step loop (`loop`)."""
