"""`minigrad-rnn plot`: the loss curves of one or several training runs, and a table comparing them.

The curves go to a PNG drawn with matplotlib (an optional extra: `pip install
'minigrad-rnn[plot]'`), or with --text to a chart of plain characters in the terminal,
which needs nothing beyond the standard library. The comparison table is printed in
every case.

Printing and drawing only: reading run folders is `rnn.runs`' job. Every name printed
from a run folder (folder names, config.json's fields) goes through `cli.output.visible`.
matplotlib is imported inside the command so that `minigrad-rnn --help` stays fast.
"""

import math
import warnings
from pathlib import Path

import click

from cli.output import visible
from cli.progress import format_duration, format_rate
from rnn.config import X_AXES  # light: no numpy, no minigrad

DEFAULT_OUTPUT = "loss.png"
INSTALL_HINT = "pip install 'minigrad-rnn[plot]'"
X_LABELS = {"steps": "step", "seconds": "seconds of training", "chars": "characters seen"}

# The terminal chart: 72 columns in all, of which 9 are the y axis ("  3.250 |").
CHART_WIDTH, CHART_HEIGHT, Y_LABEL_WIDTH = 72, 16, 7
PLOT_COLUMNS = CHART_WIDTH - Y_LABEL_WIDTH - 2
Y_LABEL_EVERY = 3  # rows between labelled rows of the y axis
MARKERS = "abcdefghijklmnopqrstuvwxyz"  # one per run: lowercase for train loss, UPPERCASE for val loss

# The PNG: 800 x 450 pixels, a few tens of KB.
FIGURE_INCHES, FIGURE_DPI = (8, 4.5), 100


@click.command("plot", short_help="Loss curves of training runs (PNG or terminal) and a comparison table.")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Image to write (.png, .svg or .pdf).  [default: {DEFAULT_OUTPUT}]")
@click.option("--x", "x_axis", type=click.Choice(X_AXES), default="steps", show_default=True,
              help="What the horizontal axis counts.")
@click.option("--log", "log_scale", is_flag=True, help="Logarithmic loss axis.")
@click.option("--text", "as_text", is_flag=True,
              help="Draw the curves in the terminal instead of writing an image (no matplotlib needed; "
                   "with -o, both).")
def plot(run_dirs, output, x_axis, log_scale, as_text):
    """Plot the train and val loss of the training runs in RUN_DIR... on one figure,
    and print a table comparing them (size, speed, best val loss).

    A RUN_DIR is the --out folder of `minigrad-rnn train` (it holds metrics.jsonl and
    config.json). A run still training, or killed mid-write, can be plotted too.
    """
    from rnn.runs import RunError, read_run

    try:
        runs = [read_run(path) for path in run_dirs]
    except RunError as error:
        raise click.ClickException(str(error)) from None
    write_image = not as_text or output is not None
    if write_image:
        _require_matplotlib()
    _warn_about_bad_lines(runs)
    names = _run_names(runs)
    labels = [f"{name} ({_model_size(run)})" for name, run in zip(names, runs)]
    if write_image:
        output = output or Path(DEFAULT_OUTPUT)
        _draw_image(runs, labels, x_axis, log_scale, output)
    if as_text:
        click.echo(text_chart(runs, labels, x_axis, log_scale))
        click.echo()
    click.echo(comparison_table([run.summary() for run in runs], names))
    if write_image:
        click.echo(f"wrote {output}: {len(runs)} run(s), loss against {X_LABELS[x_axis]}")


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException(f"drawing an image needs matplotlib: {INSTALL_HINT} "
                                   f"(or use --text for a chart in the terminal)") from None


def _warn_about_bad_lines(runs):
    # A torn last line is normal (a run killed, or still writing); garbage before it is not.
    for run in runs:
        if run.bad_line_count:
            numbers = ", ".join(str(number) for number in run.bad_lines[:5])
            more = ", ..." if run.bad_line_count > 5 else ""
            click.echo(f"warning: {visible(run.path)}/metrics.jsonl: skipped {run.bad_line_count:,} unreadable "
                       f"line(s) ({numbers}{more}); first: {visible(run.first_problem)}", err=True)
        if run.records_left_out:
            click.echo(f"warning: {visible(run.path)}/metrics.jsonl: read the first {len(run.records):,} "
                       f"records only, skipped {run.records_left_out:,} more", err=True)


def _run_names(runs) -> list:
    """Each run's folder name; the folder path as given where two folders share a name."""
    names = [run.name for run in runs]
    return [visible(run.path if names.count(name) > 1 else name) for run, name in zip(runs, names)]


def _model_size(run) -> str:
    """'lstm 2x256': the cell, layers x hidden."""
    return visible(f"{run.setting('cell') or '?'} {run.setting('layers') or '?'}x{run.setting('hidden') or '?'}")


# ---- the image ----------------------------------------------------------------------------
def _draw_image(runs, labels, x_axis, log_scale, output: Path):
    # Values near the float range (a metrics file is not trusted) make matplotlib warn of overflow
    # as it places ticks: noise to a user, whose image is drawn all the same.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _draw_curves(runs, labels, x_axis, log_scale, output)


def _draw_curves(runs, labels, x_axis, log_scale, output: Path):
    # The Agg canvas, and no pyplot: no GUI backend, no screen, no global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not any(run.curve(loss, x_axis) for run in runs for loss in ("train_loss", "val_loss")):
        raise click.ClickException("nothing to plot yet: no run has a loss value in its metrics.jsonl")
    figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    handles = []
    for index, (run, label) in enumerate(zip(runs, labels)):
        color = f"C{index % 10}"
        train, val = run.curve("train_loss", x_axis), run.curve("val_loss", x_axis)
        if train:
            axes.plot(*zip(*train), color=color, linewidth=1, alpha=0.55)
        if val:
            axes.plot(*zip(*val), color=color, linewidth=2, marker="o", markersize=3.5)
        handles.append(Line2D([], [], color=color, linewidth=2, label=label))
    # Colour says which run, line style which loss.
    handles.append(Line2D([], [], color="0.4", linewidth=1, alpha=0.55, label="train loss"))
    handles.append(Line2D([], [], color="0.4", linewidth=2, marker="o", markersize=3.5, label="val loss"))
    axes.legend(handles=handles, loc="upper right", fontsize="small")
    if log_scale:
        axes.set_yscale("log")
    # Made after the scale is set: a secondary axis resets its labels when the scale changes.
    bits_axis = axes.secondary_yaxis("right", functions=(_nats_to_bits, _bits_to_nats))
    if log_scale:
        _plain_log_labels(axes.yaxis)
        _plain_log_labels(bits_axis.yaxis)
    axes.set_xlabel(X_LABELS[x_axis])
    axes.set_ylabel("loss (nats/char)")
    bits_axis.set_ylabel("bits/char")
    axes.grid(True, alpha=0.3)
    axes.set_title("Train and validation loss", fontsize="medium")
    _save_figure(figure, output)


def _plain_log_labels(axis):
    """Tick a log loss axis like a linear one (2.5, 3, 3.5, not 3 x 10^0): a loss curve
    rarely spans even one decade, where log ticks would be few and oddly written."""
    from matplotlib.ticker import MaxNLocator, NullLocator, ScalarFormatter

    axis.set_major_locator(MaxNLocator(nbins=8))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_locator(NullLocator())


def _nats_to_bits(nats):
    return nats / math.log(2)


def _bits_to_nats(bits):
    return bits * math.log(2)


def _save_figure(figure, output: Path):
    image_format = output.suffix[1:].lower() or "png"
    supported = figure.canvas.get_supported_filetypes()
    if image_format not in supported:
        raise click.ClickException(f"cannot write {output}: unknown image format '.{image_format}' "
                                   f"(use .png, .svg or .pdf)")
    try:
        figure.savefig(output, format=image_format)
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror or error}") from None


# ---- the terminal chart -------------------------------------------------------------------
def text_chart(runs, labels, x_axis, log_scale) -> str:
    """The train and val curves of `runs` in plain characters, CHART_WIDTH columns wide."""
    series = []  # (marker, points): every train curve first, so that val points are drawn on top
    for loss, to_marker in (("train_loss", str.lower), ("val_loss", str.upper)):
        for index, run in enumerate(runs):
            series.append((to_marker(MARKERS[index % len(MARKERS)]), run.curve(loss, x_axis)))
    points = [point for _, curve in series for point in curve]
    if not points:
        return "(no loss values to draw yet)"
    log_scale = log_scale and min(y for _, y in points) > 0
    x_range = _value_range([x for x, _ in points])
    y_range = _value_range([_y_transform(y, log_scale) for _, y in points])
    grid = [[" "] * PLOT_COLUMNS for _ in range(CHART_HEIGHT)]
    for marker, curve in series:
        for column, y in _binned(curve, x_range).items():
            grid[_row(_y_transform(y, log_scale), y_range)][column] = marker

    scale = ", log scale" if log_scale else ""
    lines = [f"loss (nats/char) against {X_LABELS[x_axis]}{scale}"]
    for row, cells in enumerate(grid):
        lines.append(f"{_y_label(row, y_range, log_scale):>{Y_LABEL_WIDTH}} |{''.join(cells)}".rstrip())
    lines += _x_axis_lines(x_range, x_axis)
    for index, label in enumerate(labels):
        marker = MARKERS[index % len(MARKERS)]
        lines.append(f"  {marker} {marker.upper()}  {label}")
    lines.append("  (lowercase: train loss, UPPERCASE: val loss)")
    return "\n".join(lines)


def _value_range(values) -> tuple:
    low, high = min(values), max(values)
    if high == low:  # one value: give it some room so that it lands mid-chart
        margin = abs(low) * 0.05 or 0.5
        return low - margin, high + margin
    return low, high


def _y_transform(y, log_scale):
    return math.log(y) if log_scale else y


def _column(x, x_range) -> int:
    low, high = x_range
    return round((x - low) / (high - low) * (PLOT_COLUMNS - 1))


def _row(y, y_range) -> int:
    low, high = y_range
    return round((high - y) / (high - low) * (CHART_HEIGHT - 1))


def _binned(curve, x_range) -> dict:
    """{column: mean y of the curve's points that fall in it}: a long run has many points a column."""
    sums = {}
    for x, y in curve:
        column = _column(x, x_range)
        total, count = sums.get(column, (0.0, 0))
        sums[column] = (total + y, count + 1)
    return {column: total / count for column, (total, count) in sums.items()}


def _y_label(row, y_range, log_scale) -> str:
    if row % Y_LABEL_EVERY and row != CHART_HEIGHT - 1:
        return ""
    low, high = y_range
    value = high - row / (CHART_HEIGHT - 1) * (high - low)
    value = math.exp(value) if log_scale else value
    return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"  # a hostile 1e300 in 7 characters


def _x_axis_lines(x_range, x_axis) -> list:
    """The x axis (ticks at both ends and the middle) and the values under the ticks."""
    low, high = x_range
    ticks = [(0, low), (PLOT_COLUMNS // 2, (low + high) / 2), (PLOT_COLUMNS - 1, high)]
    axis = ["-"] * PLOT_COLUMNS
    for column, _ in ticks[1:]:  # the first tick is the corner of the two axes
        axis[column] = "+"
    values = [" "] * (PLOT_COLUMNS + 1)
    for position, (column, value) in enumerate(ticks):
        text = _format_x(value, x_axis)
        # First tick's value starts under it, the last one's ends under it, the middle one is centred.
        start = column if position == 0 else column - len(text) + 1 if position == 2 else column - len(text) // 2
        start = max(0, min(start, len(values) - len(text)))
        values[start:start + len(text)] = text
    indent = " " * (Y_LABEL_WIDTH + 1)
    return [f"{indent}+{''.join(axis)}", f"{indent} {''.join(values).rstrip()}"]


def _format_x(value, x_axis) -> str:
    if abs(value) >= 1e12:  # no real run is this long: a hostile value, kept short
        return f"{value:.3g}"
    if x_axis == "seconds":
        return format_duration(value)
    if x_axis == "chars":
        return format_rate(value)
    return f"{value:.0f}"


# ---- the comparison table -----------------------------------------------------------------
TABLE_COLUMNS = ("run", "cell", "size", "params", "steps", "time", "chars/s", "best val", "bits/char")
LEFT_ALIGNED = {"run", "cell"}


def comparison_table(summaries, names=None) -> str:
    """One row per run (named `names`, else by folder): cell, layers x hidden, parameters,
    steps, training time, speed, best val loss."""
    rows = [TABLE_COLUMNS]
    for index, summary in enumerate(summaries):
        rows.append((
            visible(names[index] if names else summary.name),
            visible(summary.cell or "?"),
            visible(f"{summary.layers or '?'}x{summary.hidden or '?'}"),
            "?" if summary.parameters is None else f"{summary.parameters:,}",
            f"{summary.steps:,}",
            format_duration(summary.seconds),
            format_rate(summary.chars_per_sec),
            _format_loss(summary.best_val_loss_nats),
            _format_loss(summary.best_val_bpc),
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(TABLE_COLUMNS))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) if name in LEFT_ALIGNED else cell.rjust(width)
                 for name, cell, width in zip(TABLE_COLUMNS, row, widths)]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * (sum(widths) + 2 * (len(widths) - 1)))
    lines.append("size: layers x hidden; best val: lowest validation loss in nats/char (and in bits/char)")
    return "\n".join(lines)


def _format_loss(loss) -> str:
    return "-" if loss is None else f"{loss:.4f}"
