"""Training: the settings (`config`), the recipe, optimizers, the state a resume carries (`state`),
resuming (`resume`), what a run trains with, decided before it starts (`resume_policy`), the
time budget's plan (`time_plan`), Ctrl-C while training (`interrupt`) and the step loop (`loop`)."""
