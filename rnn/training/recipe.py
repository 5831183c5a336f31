"""What the trainer chooses for the user: the cell family and the model's size from the time
budget, and dropout from how often the run will see its text.

Cell. Each family the recipe has measured was trained on the first 90% of tiny-shakespeare
for a time budget and scored on the last 10% (CELL_RUNS); a run gets the family whose best
run scored lowest at the measured budget nearest its own (`choose_cell`). A family never
measured is never chosen; --cell names any cell, a --cell-file's too.

Dropout. A 2x256 LSTM that reads a 1 MB text a few times learns it best without dropout.
Read ten or twenty times, the text is memorised instead (the training loss keeps falling
while the held-out loss rises), unless dropout is on; and the more passes, the more dropout
pays. How many passes a run makes depends on its limits (--steps, --epochs, --time-budget)
and, for a time budget, on how fast this machine trains. So when no --dropout is given the
trainer measures its speed over its first steps (PROBE_STEPS), plans the passes the whole
run will make (`planned_passes`) and sets the dropout to `dropout_for(passes)`.

Size. With a time budget the best model depends on how much it can read in that time. A
2x256 LSTM given a minute on a laptop reads tiny-shakespeare less than twice and is still
learning its spelling; one layer reads it five times in the same minute and ends lower.
Given five minutes or more, a wider model ends lower than 2x256. So when the run has a time
budget and neither --layers nor --hidden is given, the trainer times a few steps of the
default model before it starts (CALIBRATION_STEPS), estimates every size in SIZES from its
arithmetic per character (`cost_per_char`), and takes the largest that will still read the
text MIN_PASSES times (`choose_size`). Sizes above the default are only taken for texts
long enough for their parameters (MAX_PARAMETERS_PER_CHAR): on a short text a bigger model
only memorises faster; a text too short for the smallest of them gets the largest of
SHORT_TEXT_SIZES it can carry (`size_for_text`). Runs limited by steps or epochs keep the
default size (DEFAULT_SIZE), or that of `size_for_text` for a text too short for it: their
length does not depend on the machine.

Batch. B streams of a text too short for B streams of a few windows each would each hold a
window or two: when --batch-size is not given, `batch_size_for` takes DEFAULT_BATCH_SIZE, or
fewer streams, each at least MIN_WINDOWS_PER_STREAM windows long.

A faster machine or a longer budget then gets a model sized and regularised for the reading
it will really do, instead of a more memorised one.

Learning rate. Adam's best peak rate falls with the model's width: when --lr is not given,
`lr_for` takes LR_TIMES_HIDDEN / hidden.

The choices are printed at the start and recorded in config.json and in the checkpoints;
--cell, --layers, --hidden, --batch-size, --dropout and --lr, when given, always win. Nothing
else is chosen: weight decay and the schedule keep their defaults (rnn.training.config.TrainConfig).
"""

import math
from typing import NamedTuple

from rnn.training import config

# ---- cell family ----------------------------------------------------------------------------------


class CellRun(NamedTuple):
    """One run (or the best of a few sizes) behind choose_cell."""

    budget: float  # seconds of --time-budget
    cell: str
    size: str  # layers x hidden
    steps: int  # None where not kept
    held_out: float  # nats/char of the latest checkpoint on the last 10%, as one stream; None where not kept
    behind: float  # nats/char behind the run of the same budget that scored lowest (0 for that run)


# Measured on a 2-core Intel Xeon (the runs of issue 29): `minigrad-rnn train train90.txt
# --time-budget B --cell C [--layers L --hidden H]`, then `minigrad-rnn eval RUN/latest.safetensors
# test10.txt` (the first 90% and the last 10% of tiny-shakespeare). lstm's size is the recipe's
# choice for the budget. At 60 s sru 3x256, 4x256 and 3x384 each trailed lstm 1x256, by 0.04 to
# 0.13 nats/char: the row keeps the closest. sru, whose recurrence is elementwise, runs more
# steps in the time (2774 against 1950 at 300 s) but learns less from each.
CELL_RUNS = (CellRun(60, "lstm", "1x256", None, None, 0.0),
             CellRun(60, "sru", "3x256, 4x256, 3x384", None, None, 0.04),
             CellRun(300, "lstm", "2x384", 1950, 1.3936, 0.0),
             CellRun(300, "sru", "3x384", 2774, 1.4416, 0.048))


def choose_cell(limits: dict, allowed=lambda cell: True) -> dict:
    """The cell family for a run with these `limits` (see planned_passes): {"cell",
    "measured_budget", "behind"} of the family whose run scored lowest at the budget of CELL_RUNS
    nearest (by ratio) the run's time budget (a run with none: the longest measured), with
    every family's nats/char behind it there (`behind`: cell -> nats/char). Only the families
    for which `allowed(cell)` is true are candidates (a --weight-drop needs recurrent weights)."""
    budgets = sorted({run.budget for run in CELL_RUNS if allowed(run.cell)})
    budget = limits.get("time_budget")
    measured = budgets[-1] if budget is None else min(budgets, key=lambda b: abs(math.log(budget / b)))
    behind = {}
    for run in CELL_RUNS:
        if run.budget == measured and allowed(run.cell):
            behind[run.cell] = min(run.behind, behind.get(run.cell, math.inf))
    return {"cell": min(behind, key=behind.get), "measured_budget": measured, "behind": behind}


# ---- size -----------------------------------------------------------------------------------------

# (layers, hidden) of the model a run gets when the recipe does not choose (no time budget).
DEFAULT_SIZE = config.DEFAULT_SIZE
# The sizes the recipe chooses from, smallest first (each costs about 1.75-2x the one before).
# 2x512 joined them from the runs on a 2-core Zen 5 in SIZE_RUNS: at the steps this machine
# makes in 1200 s it ended 0.005 nats/char lower than 2x384, and at those of 300 s level with
# it (0.0014 lower over two seeds), as choose_size's rule allows (it reads the text 19.5 and
# 4.9-5.5 times there). On the Xeon of the earlier runs, at 1200 s, 2x512 (10.3 passes,
# dropout 0.17 by the rule of that time) had trailed 2x384 (17.9 passes, dropout 0.3) by
# 0.004: within the spread of a seed. Larger sizes were tried at 1200 s of that Zen 5's steps
# (at the learning rate of `lr_for`, LARGER_SIZE_RUNS) and none ended below 2x512: it stays the largest.
SIZES = ((1, 256), (2, 256), (2, 384), (2, 512))
# choose_size takes the largest size that reads the text at least this many times. From runs
# on the first 81% of tiny-shakespeare scored on the next 9% (SIZE_RUNS): at a minute's worth
# of steps 2x256 reads it 1.9 times and loses to 1x256 reading it 4.8 times (by 0.048
# nats/char); at five minutes' worth 2x384 reading it 4.4 times ends below 2x256 reading it
# 9.3 times, but only by 0.007, about the spread between two runs of the same settings: from
# there on the two sizes are close (the bigger gets more dropout as passes grow). On a 2-core
# Zen 5 a 60 s run planned 3.15 passes for 2x256 and made 1317 steps (2.7 passes): at those
# steps 2x256 ended behind 1x256 at its 3500 steps (7.1 passes), by 0.014 and 0.009 nats/char
# over two seeds (SIZE_RUNS). So a size must plan 4 passes: between the 3.15 that lost and the
# 4.4 that won.
MIN_PASSES = 4.0
# A size only for texts of at least parameters / MAX_PARAMETERS_PER_CHAR characters (2x512
# has 3.3M parameters: a text of 0.9 MB or more; 2x384, 1.9M: 0.51 MB; 2x256, 0.88M: 0.24 MB;
# tiny-shakespeare's training part is 1.0 MB). The bound is the largest ratio measured to
# pay: 2x512 on the 0.9 MB inner split (3.7 parameters per character) ended lowest in
# SIZE_RUNS. Above it nothing was measured, and char-rnn's advice (parameters of the order of
# the characters) says why to stop: a 2,000-character text with a 2x256 model memorises it in
# a few hundred steps (training loss 0.002, held-out loss worse than a uniform guess).
MAX_PARAMETERS_PER_CHAR = 3.7
# The sizes below SIZES, smallest first, for texts too short for 1x256 (under about 150 kB):
# the largest the text can carry is taken, or the smallest (a large vocabulary alone, in its
# embedding and output layer, can pass the bound).
SHORT_TEXT_SIZES = ((1, 32), (1, 64), (1, 128))
# Steps of the default model timed before training, to measure this machine: the first ones
# load (or compile) the kernels and are not timed.
CALIBRATION_STEPS = (2, 8)

# (steps, layers x hidden, passes, dropout, score on the 81-90% part) of the runs behind
# MIN_PASSES and SIZES: `minigrad-rnn train first90.txt --steps S --layers L --hidden H
# --dropout D --eval-every 0` (first90.txt: the first 90% of tiny-shakespeare, whose last
# 10% is the scored part), steps set to what a 2-core machine does with that size in 60 s,
# 300 s or 1200 s, dropout the rule's for the passes the real run makes there. The first
# four on an Intel Xeon; the others on an AMD Zen 5 (2026-12-07, one thread per run; the
# sixth pair with --seed 2, 2x512 at the 2431 steps a real 300 s run then made; the last
# two pairs 60 s of steps of each size on a slower day of that machine, seeds 1234 and 2).
SIZE_RUNS = ((820, "2x256", 1.9, 0.0, 1.5275), (2100, "1x256", 4.8, 0.06, 1.4796),
             (4100, "2x256", 9.3, 0.15, 1.3973), (1950, "2x384", 4.4, 0.05, 1.3907),
             (3795, "2x384", 8.6, 0.17, 1.3826), (2170, "2x512", 4.9, 0.06, 1.3794),
             (15000, "2x384", 34.0, 0.5, 1.3856), (8600, "2x512", 19.5, 0.4, 1.3802),
             (3795, "2x384", 8.6, 0.17, 1.3839), (2431, "2x512", 5.5, 0.09, 1.3842),
             (1317, "2x256", 2.7, 0.04, 1.4639), (3500, "1x256", 7.1, 0.13, 1.4502),
             (1317, "2x256", 2.7, 0.04, 1.4573), (3500, "1x256", 7.1, 0.13, 1.4479))
# Sizes above SIZES at the steps a 2-core Zen 5 makes in 1200 s with each (2x512 8100, 3x512
# 6050 and 2x768 3950: the two larger ones take 1.34x and 2.05x its time a step on 2 threads),
# the learning rate of `lr_for`, one thread per run, seed 1234 (2026-12-08), in the same
# format. 2x512 reaches 1.3708 there, only 0.0016 below its 1.3724 at the 2107 steps of a
# 300 s run (LR_RUNS): at 18 passes it has taken what this text gives it. A third layer did
# not add to that (0.003 behind, at the rule's dropout and at 0.42), and 2x768 at the rule's
# dropout (0.15 for its 9 passes) memorised the text (training loss 0.99, 0.044 behind).
LARGER_SIZE_RUNS = ((8100, "2x512", 18.4, 0.45, 1.3708), (6050, "3x512", 13.7, 0.26, 1.3741),
                    (6050, "3x512", 13.7, 0.42, 1.3735), (3950, "2x768", 9.0, 0.15, 1.4149))


def cost_per_char(layers: int, hidden: int, embed: int, gates: int, vocab: int) -> int:
    """Multiply-adds per character of a model's forward pass: each layer's gates times its
    input and hidden sizes, and the output layer (backward costs twice that, in the same proportion)."""
    recurrent = sum(gates * hidden * ((embed if k == 0 else hidden) + hidden) for k in range(layers))
    return recurrent + hidden * vocab


def parameter_count(layers: int, hidden: int, embed: int, gates: int, vocab: int) -> int:
    """The parameters of a CharLM of this size (embedding, recurrent weights and biases, output layer)."""
    recurrent = sum(gates * hidden * ((embed if k == 0 else hidden) + hidden + 2) for k in range(layers))
    return vocab * embed + recurrent + vocab * (hidden + 1)


def size_for_text(train_chars: int, embed: int, gates: int, vocab: int, largest=DEFAULT_SIZE) -> tuple:
    """(layers, hidden): the largest of SHORT_TEXT_SIZES and SIZES, up to `largest`, whose
    parameters the text can carry (MAX_PARAMETERS_PER_CHAR), or the smallest of them."""
    ladder = [size for size in SHORT_TEXT_SIZES + SIZES if size <= largest]
    fitting = [size for size in ladder if fits_text(size, train_chars, embed, gates, vocab)]
    return fitting[-1] if fitting else ladder[0]


def fits_text(size: tuple, train_chars: int, embed: int, gates: int, vocab: int) -> bool:
    return parameter_count(*size, embed, gates, vocab) <= MAX_PARAMETERS_PER_CHAR * train_chars


def choose_size(limits: dict, default_seconds_per_step: float, chars_per_step: int, train_chars: int,
                embed: int, gates: int, vocab: int) -> dict:
    """The size for a run with these `limits` (a time budget among them) on a machine where a
    step of the default size takes `default_seconds_per_step`: {"layers", "hidden",
    "planned_passes", "parameters"} of the largest of SIZES that reads the text MIN_PASSES
    times before the first limit (the smallest if none does), among the sizes the text is
    long enough for; a text too short for any of SIZES gets `size_for_text`'s."""
    default_cost = cost_per_char(*DEFAULT_SIZE, embed, gates, vocab)
    candidates = []
    sizes = [size for size in SIZES if fits_text(size, train_chars, embed, gates, vocab)]
    for layers, hidden in sizes or [size_for_text(train_chars, embed, gates, vocab)]:
        parameters = parameter_count(layers, hidden, embed, gates, vocab)
        seconds_per_step = default_seconds_per_step * cost_per_char(layers, hidden, embed, gates, vocab) / default_cost
        passes = planned_passes(limits, chars_per_step, train_chars, seconds_per_step)
        candidates.append({"layers": layers, "hidden": hidden, "planned_passes": round(passes, 2),
                           "parameters": parameters})
    enough = [size for size in candidates if size["planned_passes"] >= MIN_PASSES]
    return enough[-1] if enough else candidates[0]


# ---- learning rate -------------------------------------------------------------------------------

# Adam's and AdamW's peak learning rate when --lr is not given: LR_TIMES_HIDDEN / hidden
# (`lr_for`). Adam moves each weight by about the learning rate a step, whatever its
# gradient's scale, and a unit sums `hidden` such weights, so how far a unit's input moves in a
# step grows with the width: the best rate falls as 1 / width (the rule muP gives Adam's
# hidden layers). Measured on the inner split (LR_RUNS), at the steps a 2-core machine makes in
# 60 s (1x256) and 300 s (2x512): 1x256 ended best at 0.018-0.027 (0.035 nats/char below the
# 6e-3 every size had before), 2x512 at 0.009 (0.008 below 6e-3, two seeds), so 5 / hidden:
# 0.0195 at 256, 0.013 at 384, 0.0098 at 512. A check of the rule on a size it was not read
# from: 2x256 at 0.0195 ended 0.0135 below 6e-3. Widths below 256 (short texts) get 256's rate:
# nothing larger was measured. The other optimizers keep one rate for every width (not measured).
LR_TIMES_HIDDEN = config.LR_TIMES_HIDDEN
LR_SMALLEST_WIDTH = config.LR_SMALLEST_WIDTH
OTHER_OPTIMIZERS_LR = config.OTHER_OPTIMIZERS_LR

# (layers x hidden, steps, dropout, lr, seed, nats/char on the 81-90% part) of the runs behind
# LR_TIMES_HIDDEN: `minigrad-rnn train first90.txt --steps S --layers L --hidden H --dropout D
# --lr LR --seed SEED --eval-every 0` (first90.txt: the first 90% of tiny-shakespeare), one
# thread per run, on a 2-core Zen 5 (2026-12-08).
LR_RUNS = (("1x256", 3500, 0.13, 0.006, 1234, 1.4502), ("1x256", 3500, 0.13, 0.006, 2, 1.4479),
           ("1x256", 3500, 0.13, 0.009, 1234, 1.4342), ("1x256", 3500, 0.13, 0.009, 2, 1.4348),
           ("1x256", 3500, 0.13, 0.012, 1234, 1.4263), ("1x256", 3500, 0.13, 0.018, 1234, 1.4157),
           ("1x256", 3500, 0.13, 0.027, 1234, 1.4164), ("1x256", 3500, 0.13, 0.04, 1234, 1.4207),
           ("2x512", 2107, 0.07, 0.004, 1234, 1.3788), ("2x512", 2107, 0.07, 0.006, 1234, 1.3826),
           ("2x512", 2107, 0.07, 0.006, 2, 1.3781), ("2x512", 2107, 0.07, 0.009, 1234, 1.3724),
           ("2x512", 2107, 0.07, 0.009, 2, 1.3725), ("2x512", 2107, 0.07, 0.012, 1234, 1.3666),
           ("2x512", 2107, 0.07, 0.012, 2, 1.3815), ("2x512", 2107, 0.07, 0.018, 1234, 1.3732),
           ("2x256", 2400, 0.09, 0.006, 1234, 1.4179), ("2x256", 2400, 0.09, 0.0195, 1234, 1.4044))


def lr_for(optimizer: str, hidden: int) -> float:
    """The peak learning rate of a run with this optimizer and width that gives none (three
    significant digits)."""
    if optimizer not in config.LR_BY_WIDTH_OPTIMIZERS:
        return OTHER_OPTIMIZERS_LR
    return float(f"{LR_TIMES_HIDDEN / max(hidden, LR_SMALLEST_WIDTH):.3g}")


# ---- batch ---------------------------------------------------------------------------------------

DEFAULT_BATCH_SIZE = config.DEFAULT_BATCH_SIZE
MIN_WINDOWS_PER_STREAM = config.MIN_WINDOWS_PER_STREAM


def batch_size_for(train_chars: int, seq_len: int) -> int:
    """DEFAULT_BATCH_SIZE streams, or as many as hold MIN_WINDOWS_PER_STREAM windows each (at least one)."""
    return max(1, min(DEFAULT_BATCH_SIZE, train_chars // (MIN_WINDOWS_PER_STREAM * (seq_len + 1))))


# ---- dropout --------------------------------------------------------------------------------------

# Speed is measured over these steps of a session (0-based, end excluded): the first steps
# may still compile kernels, which would make the machine look slower than it is.
PROBE_STEPS = (5, 25)

# dropout_for: none up to PASSES_WITHOUT_DROPOUT passes, then DROPOUT_PER_PASS more per pass,
# up to MAX_DROPOUT. Read from runs trained on the first 81% of tiny-shakespeare and scored on
# the next 9% (never on the last 10%, which the README's quality numbers are from), listed in
# DROPOUT_RUNS: at 4.4 passes (2x384) dropout 0.05 beat 0.15 and 0.25; at 11.3 passes (2x256)
# 0.2 beat none by 0.021 nats/char; at 17.9 passes (2x384) 0.4 beat 0.3 and 0.2, each by
# about 0.006. The slope puts 0.06, 0.23 and 0.4 there and reaches the cap at 22 passes; the
# cap is the top of the common range (char-rnn's and nanoGPT's examples use 0.2-0.5).
PASSES_WITHOUT_DROPOUT = 2.0
DROPOUT_PER_PASS = 0.025
MAX_DROPOUT = 0.5

# (layers x hidden, passes, dropout, nats/char on the 81-90% part, latest checkpoint) of the
# runs behind the rule: `minigrad-rnn train first90.txt --steps S [--hidden 384] --dropout D
# --eval-every 0` (its last 10% is the scored part). The 11.3-pass pair is 5000 steps of the
# 2x256 defaults of that time (dropout its only change); the others are 1950 and 7893 steps,
# what this 2-core machine does in 300 s and 1200 s at 2x384.
# Not among them, being level: on a 2-core Zen 5 (2026-12-07), whether the largest size
# wants more than the rule at the 2107 steps of a 300 s run there (4.7 passes; the rule gives
# 0.07). 2x512 with 0.07 / 0.15: 1.3826 / 1.3777 (seed 1234), 1.3781 / 1.3810 (seed 2); means
# 1.3804 / 1.3794, 0.001 apart where two seeds of one setting differ by up to 0.005.
# The runs above trained at the learning rate 6e-3. The last three, at the rate of `lr_for`
# (0.00977), check the rule under it: 2x512 at the 8100 steps a real 1200 s run makes on that
# Zen 5 (18.4 passes over the inner split; the rule gives 0.41), dropout 0.32 / 0.45 / 0.6,
# one thread per run, seed 1234 (2026-12-08). 0.45 ended lowest, 0.32 by 0.005 above it and
# 0.6 by 0.025: the rule stands, and MAX_DROPOUT is not raised.
DROPOUT_RUNS = (("2x384", 4.4, 0.05, 1.3907), ("2x384", 4.4, 0.15, 1.4021), ("2x384", 4.4, 0.25, 1.4083),
                ("2x256", 11.3, 0.0, 1.4111), ("2x256", 11.3, 0.2, 1.3899),
                ("2x384", 17.9, 0.2, 1.3920), ("2x384", 17.9, 0.3, 1.3866), ("2x384", 17.9, 0.4, 1.3801),
                ("2x512", 18.4, 0.32, 1.3756), ("2x512", 18.4, 0.45, 1.3708), ("2x512", 18.4, 0.6, 1.3961))


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
