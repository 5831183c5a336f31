"""`minigrad-rnn gradcheck`: every op's and cell's backward against finite differences, one row each."""

import click

from cli.app import EXIT_RUNTIME_ERROR, LibraryCommand, error_exit
from cli.options import cell_file_option, load_cell_file


@click.command(cls=LibraryCommand, short_help="Check every op's and cell's gradients numerically.")
@click.option("--cell", "cell_name", metavar="NAME|all", default=None,
              help="Check only this cell (or every cell); default: every op and every cell.")
@click.option("--op", "op_name", metavar="NAME|all", default=None,
              help="Check only this op (or every op).")
@cell_file_option
def gradcheck(cell_name, op_name, cell_file):
    """Compare every op's and cell's backward with finite differences (float64).

    Cells run both engines (eager and fused) over 5 steps in 2 layers with a carried
    state. Prints one row per check and exits with 1 if any check fails.
    """
    load_cell_file(cell_file)
    from rnn.cells.registry import CellError
    from rnn.errors import ArgumentError
    from rnn.model import checks

    try:
        cases = checks.gradcheck_cases(cell_name, op_name)
    except CellError as error:
        raise click.BadParameter(str(error), param_hint="'--cell'") from None
    except ArgumentError as error:
        raise click.BadParameter(str(error), param_hint="'--op'") from None
    header = f"{'check':<24} {'kind':<5} {'shape':<32} {'max abs err':>12} {'max rel err':>12}  ok"
    click.echo(header)
    click.echo("-" * len(header))
    failures = []
    for case in cases:
        result = checks.run_case(case)
        click.echo(f"{result.name:<24} {result.kind:<5} {result.shape:<32} "
                   f"{result.max_abs_error:>12.2e} {result.max_rel_error:>12.2e}  {'ok' if result.ok else 'FAIL'}")
        if not result.ok:
            failures.append(result)
    for result in failures:
        for report in result.failed_inputs:
            click.echo(f"FAIL {result.name}: input {report.index} {report.shape}, element {report.worst_element}: "
                       f"analytic {report.analytic:.8g}, numeric {report.numeric:.8g}", err=True)
    if failures:
        error_exit(f"{len(failures)} gradient check(s) failed: {', '.join(r.name for r in failures)}",
                   EXIT_RUNTIME_ERROR)
    click.echo(f"all {len(cases)} checks passed")
