"""`minigrad-rnn graph`: show the autograd graph of a recurrent cell unrolled for a few steps.

Argument parsing and printing only: the graph comes from `minigrad.viz`, the kernel
source from `rnn.fused.compiler`. numpy, minigrad and rnn are imported inside the command so
that `minigrad-rnn --help` stays fast.
"""

import click

from cli.options import cell_file_option, load_cell_file

INPUT_SIZE = 2  # tiny on purpose: the graph's structure, not its size, is what one reads
BATCH_SIZE = 1


def _unrolled_cell(cell, steps, hidden, engine="eager"):
    """Run the layer for `steps` steps; return (outputs tensor, names for viz, layer)."""
    import numpy as np

    import minigrad as mg
    from rnn.model.layers import Recurrent

    layer = Recurrent(cell, INPUT_SIZE, hidden, engine=engine)
    # The values do not show in the graph, only shapes do: any input will do.
    inputs = mg.tensor(np.random.default_rng(0).standard_normal((BATCH_SIZE, steps, INPUT_SIZE)).astype(np.float32))
    initial = tuple(mg.tensor(np.zeros((BATCH_SIZE, hidden), np.float32)) for _ in layer.cell.state)
    outputs, _ = layer(inputs, [initial])
    # The input shows as an unnamed constant: the layer reshapes it before the first op.
    names = {id(state): f"{name}0" for name, state in zip(layer.cell.state, initial)}  # h0, c0
    return outputs, names, layer


@click.command("graph")
@click.option("--cell", "cell_name", default="lstm", show_default=True,
              help="Built-in cell name, or one declared in --cell-file.")
@cell_file_option
@click.option("--steps", type=click.IntRange(1, 100), default=2, show_default=True,
              help="Time steps to unroll.")
@click.option("--hidden", type=click.IntRange(1, 64), default=3, show_default=True,
              help="Hidden size.")
@click.option("--dot", "dot_path", type=click.Path(dir_okay=False), default=None,
              help="Write Graphviz DOT to this file instead of printing the text tree.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Write an interactive page (values, gradients, the backward walk) to this file.")
@click.option("--fused", is_flag=True,
              help="Use the fused engine: the recurrence is one node (the page shows its kernel).")
@click.option("--kernel", is_flag=True,
              help="Print the source of the cell's generated fused kernels (with --dot/--html: as well).")
def graph(cell_name, cell_file, steps, hidden, dot_path, html_path, fused, kernel):
    """Print the autograd graph of a recurrent cell unrolled for a few steps (eager engine unless --fused).

    Render the DOT file with Graphviz, e.g. `dot -Tsvg graph.dot -o graph.svg`. The --html page
    opens from disk in a browser; it shows the graph of the outputs' sum after one backward pass.
    """
    import minigrad as mg
    from rnn.cells.registry import CellError, get_cell
    from rnn.fused.compiler import generate_source

    try:
        load_cell_file(cell_file)
        cell = get_cell(cell_name)
    except CellError as error:
        raise click.ClickException(str(error)) from None

    if kernel:
        click.echo(generate_source(cell), nl=False)
    if kernel and not (dot_path or html_path):
        return
    engine = "fused" if fused else "eager"
    outputs, names, layer = _unrolled_cell(cell, steps, hidden, engine)
    params = dict(layer.named_parameters())
    unrolled = f"{steps} step" + ("s" if steps > 1 else "")
    if html_path:
        _write_page(html_path, outputs, names, params, f"{cell.name}, {unrolled}, {engine}")
    if not (dot_path or html_path):
        click.echo(mg.viz.format_graph(outputs, names=names, params=params), nl=False)
    if not dot_path:
        return
    text = mg.viz.to_dot(outputs, names=names, params=params, graph_name=f"{cell.name}, {unrolled}")
    try:
        with open(dot_path, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        raise click.ClickException(f"cannot write {dot_path}: {error.strerror}") from None
    operations = sum(mg.viz.op_counts(outputs).values())
    click.echo(f"wrote {dot_path}: {cell.name} unrolled for {unrolled}, {operations} ops")


def _write_page(path, outputs, names, params, title):
    """The page of `outputs.sum()` after one backward pass, its walk recorded as the engine made it."""
    import minigrad as mg

    loss = outputs.sum()
    with mg.viz.record_backward() as walk:
        loss.backward()
    try:
        view = mg.viz.to_html(loss, path, names=names, params=params, walk=walk, title=title)
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror}") from None
    click.echo(f"wrote {path}: {title}, {len(view.model['nodes'])} nodes, layout {view.model['layout']}")
