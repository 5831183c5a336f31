"""The `minigrad-rnn` command group's manners: how errors are reported, and the one place
where process-wide settings change.

- a user's mistake ends in one line on stderr starting with "error: ", never a
  traceback: exit code 2 for a bad command line, 1 when something fails while running,
  130 when interrupted. The library's exceptions are turned into that line in one
  place, `App.main`: a `rnn.errors.UserError` (a bad text, checkpoint, cell, setting or
  run folder) shows its message, with the settings it names written as this CLI's flags
  (`grad_clip` -> `--grad-clip`; an `ArgumentError` is a usage error, see `LibraryCommand`);
  an OSError its reason; an ImportError (a package missing, or one whose version does not
  fit, e.g. a Numba that moved what minigrad's kernel cache uses) its message; anything
  else is a bug, reported as such in one line, with its traceback when MINIGRAD_RNN_DEBUG
  is set; a NUMBA_NUM_THREADS that Numba would fail on is refused before any command
  runs (exit 2), and so is a deleted working folder (exit 1);
- `LibraryCommand` runs a command inside minigrad.runtime.configured_for_training().
Nothing heavy is imported here: numpy, numba and minigrad load inside the commands.
"""

import os
import sys
import warnings

import click

from cli.output import use_replacement_for_unencodable_output, visible

PROGRAM = "minigrad-rnn"
EXIT_RUNTIME_ERROR, EXIT_USAGE_ERROR, EXIT_INTERRUPTED = 1, 2, 130
DEBUG_VARIABLE = "MINIGRAD_RNN_DEBUG"  # set it to see the traceback of an unexpected error
THREADS_VARIABLE = "NUMBA_NUM_THREADS"  # read by Numba when it is imported


# rnn's arguments that a command takes as its arguments, not as options: named as its usage line names them.
ARGUMENTS = {"texts": "TEXT"}


def flag(setting: str) -> str:
    """This CLI's flag for a setting of rnn (a TrainConfig field or an argument of rnn.training.loop.train)."""
    return ARGUMENTS.get(setting) or "--" + setting.replace("_", "-")


def _user_error_type():
    # Looked up only if already imported: if rnn.errors was never imported, no UserError can
    # have been raised, and start-up stays free of imports it does not need.
    module = sys.modules.get("rnn.errors")
    return module.UserError if module is not None else ()


def _one_line(message) -> str:
    return " ".join(str(message).split())


def error_exit(message, code):
    # visible(): a message may quote a file name or a checkpoint's field (see cli/output.py).
    click.echo(f"error: {visible(_one_line(message))}", err=True)
    sys.exit(code)


def _describe_os_error(error: OSError) -> str:
    what = error.strerror or str(error)
    if error.filename:
        return f"{what}: {error.filename}"
    return what


def check_thread_count():
    """Refuse a NUMBA_NUM_THREADS that Numba would fail on (0: an error at import) or die of
    (100000: SIGSEGV when its thread pool starts): a whole number from 1 to the CPU count."""
    given = os.environ.get(THREADS_VARIABLE)
    if given is None:
        return
    cpus = os.cpu_count() or 1
    digits = given.strip()
    if not (digits.isdecimal() and len(digits) <= 9 and 1 <= int(digits) <= cpus):  # 9: int() of any length is slow
        error = click.ClickException(f"{THREADS_VARIABLE} must be a whole number from 1 to {cpus} "
                                     f"(this machine's CPUs), got {given[:20]!r}{'...' if len(given) > 20 else ''}")
        error.exit_code = EXIT_USAGE_ERROR
        raise error


def check_working_folder():
    """Refuse to run in a working folder that was deleted: Numba cannot compile there (it asks
    for the current folder to name source files) and a relative path cannot mean any file."""
    try:
        os.getcwd()
    except FileNotFoundError:
        shown = os.environ.get("PWD") or "the current folder"  # the shell's record: the kernel has none left
        raise click.ClickException(f"the working folder {shown} no longer exists (was it deleted?): "
                                   f"cd to a folder that exists and run the command again") from None


class App(click.Group):
    """The command group, with error reporting of its own (see the module docstring)."""

    def invoke(self, ctx):
        # Here, not in main(): --help and --version need neither threads nor a working folder.
        check_thread_count()
        check_working_folder()
        return super().invoke(ctx)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        use_replacement_for_unencodable_output(sys.stdout)  # `?`, not a crash, where stdout's encoding ends
        if not standalone_mode:  # embedding code asked to handle exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        # Overflow warnings of numpy are noise to a user: a diverging run is reported as such.
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(numpy|minigrad|rnn)(\.|$)")
        try:
            exit_code = super().main(args, prog_name or PROGRAM, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()  # no command given: the help is the clearest answer
            sys.exit(error.exit_code)
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx is not None else PROGRAM
            error_exit(f"{error.format_message()} (see '{command} --help')", EXIT_USAGE_ERROR)
        except click.ClickException as error:
            error_exit(error.format_message(), error.exit_code)
        except click.Abort:  # Ctrl-C outside training, or a prompt aborted
            error_exit("interrupted", EXIT_INTERRUPTED)
        except Exception as error:  # noqa: BLE001  (the one place errors become messages)
            self._report(error)
        sys.exit(exit_code if isinstance(exit_code, int) else 0)

    @staticmethod
    def _report(error: Exception):
        if isinstance(error, _user_error_type()):
            error_exit(error.render(flag), EXIT_RUNTIME_ERROR)
        if isinstance(error, OSError):
            error_exit(_describe_os_error(error), EXIT_RUNTIME_ERROR)
        if isinstance(error, ImportError):  # the installation, not this program: the message says what to do
            error_exit(str(error), EXIT_RUNTIME_ERROR)
        if isinstance(error, MemoryError):
            error_exit("out of memory: try a smaller --batch-size, --hidden or --seq-len", EXIT_RUNTIME_ERROR)
        if os.environ.get(DEBUG_VARIABLE):
            raise error
        error_exit(f"unexpected {type(error).__name__}: {error} "
                   f"(this is a bug; set {DEBUG_VARIABLE}=1 to see the traceback)", EXIT_RUNTIME_ERROR)


class LibraryCommand(click.Command):
    """A command of the CLI (cli/train.py, cli/sample.py, ...). It runs inside
    minigrad.runtime.configured_for_training(): the one place where the CLI changes
    process-wide settings (OpenBLAS at one thread, malloc keeping freed memory, the
    background compile helper), as training needs them. Imported only when the command
    runs, after its options are parsed (so --help stays light). The library's
    rnn.errors.ArgumentError (what was given cannot work as given) is a usage error here."""

    def invoke(self, ctx):
        from minigrad.runtime import configured_for_training
        from rnn.errors import ArgumentError

        with configured_for_training():
            try:
                return super().invoke(ctx)
            except ArgumentError as error:
                raise click.UsageError(error.render(flag), ctx) from None
