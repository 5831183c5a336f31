"""The one setting the trainer chooses for the user: dropout, from how often the run will
see its text.

A 2x256 LSTM that reads a 1 MB text a few times learns it best without dropout. Read ten
or twenty times, the text is memorised instead (the training loss keeps falling while the
held-out loss rises), unless dropout is on; and the more passes, the more dropout pays.
How many passes a run makes depends on its limits (--steps, --epochs, --time-budget) and,
for a time budget, on how fast this machine trains. So when no --dropout is given the
trainer measures its speed over its first steps (PROBE_STEPS), plans the passes the
whole run will make (`planned_passes`) and sets the dropout to `dropout_for(passes)`.
A faster machine or a longer budget then gets a model regularised for the passes it will
really make, instead of a more memorised one. The choice is printed at the start and
recorded in config.json and in the checkpoints; --dropout, when given, always wins.

Nothing else is chosen: model size, learning rate, batch and weight decay keep their
defaults (rnn.train.TrainConfig), which were tuned for short runs.
"""

import math

# Speed is measured over these steps of a session (0-based, end excluded): the first steps
# may still compile kernels, which would make the machine look slower than it is.
PROBE_STEPS = (5, 25)

# dropout_for: none up to PASSES_WITHOUT_DROPOUT passes, then DROPOUT_PER_PASS more per pass,
# up to MAX_DROPOUT. Read from runs of the 2x256 lstm defaults trained on the first 81% of
# tiny-shakespeare and scored on the next 9% (never on the last 10%, which the README's
# quality numbers are from), listed in DROPOUT_RUNS: at 11.3 passes dropout 0.2 beat none
# by 0.021 nats/char. The slope puts ~0.2 there and reaches the cap at 17 passes; the cap
# is the common choice for models of this size (char-rnn's and nanoGPT's examples use 0.2-0.5).
PASSES_WITHOUT_DROPOUT = 2.0
DROPOUT_PER_PASS = 0.02
MAX_DROPOUT = 0.3

# (passes, dropout, held-out nats/char of the latest checkpoint) of the runs behind the rule:
# `minigrad-rnn train first90.txt --steps 5000 --dropout D` (its last 10% is the held-out part).
DROPOUT_RUNS = ((11.3, 0.0, 1.4111), (11.3, 0.2, 1.3899))


def planned_passes(limits: dict, chars_per_step: int, train_chars: int, seconds_per_step: float = None) -> float:
    """Passes over the training text the run will make before its first limit: `limits` holds
    "steps", "epochs" and "time_budget" (None where not set); a time budget counts only when
    the seconds per step are known. math.inf when no limit can be planned."""
    passes = []
    if limits.get("steps") is not None:
        passes.append(limits["steps"] * chars_per_step / train_chars)
    if limits.get("epochs") is not None:
        passes.append(float(limits["epochs"]))
    if limits.get("time_budget") is not None and seconds_per_step:
        passes.append(limits["time_budget"] / seconds_per_step * chars_per_step / train_chars)
    return min(passes, default=math.inf)


def dropout_for(passes: float) -> float:
    """The dropout for a run that reads its text `passes` times (two decimals)."""
    if not passes > PASSES_WITHOUT_DROPOUT:
        return 0.0
    return round(min(MAX_DROPOUT, DROPOUT_PER_PASS * (passes - PASSES_WITHOUT_DROPOUT)), 2)


def needs_speed(limits: dict) -> bool:
    """Whether the plan depends on this machine's speed (a time budget is among the limits)."""
    return limits.get("time_budget") is not None
