"""The `minigrad-rnn` command line: train, sample, eval, info, gradcheck, graph, plot.

Argument parsing and printing only; every computation is a call into `rnn`. One module per
command (cli/train.py, cli/sample.py, ...), registered below, explicitly; how errors become
one line and where process-wide settings change is cli/app.py.

Start-up must stay fast (`minigrad-rnn --help` well under half a second), so nothing heavy
is imported at module level: numpy, numba and minigrad are imported inside the command
functions. Of rnn, only the light rnn.training.config and rnn.errors load here (the choices and
defaults `train --help` shows).
"""

import click

from cli.app import PROGRAM, App
from cli.evaluate import evaluate_command
from cli.gradcheck import gradcheck
from cli.graph import graph
from cli.info import info
from cli.plot import plot
from cli.sample import sample
from cli.train import train

COMMANDS = (train, sample, evaluate_command, info, gradcheck, graph, plot)


@click.group(cls=App, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="minigrad-rnn", prog_name=PROGRAM)
def main():
    """Train and sample character-level recurrent language models on a laptop CPU.

    \b
    Quick start:
      minigrad-rnn train --time-budget 60        # tiny-shakespeare, about a minute
      minigrad-rnn sample runs/<run>/best.safetensors

    Each command has its own --help.
    """


for _command in COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()
