"""UserError: the base of every exception that says "what you gave cannot work", in one line.

A bad text, checkpoint, cell, setting or run folder is the user's situation, not a bug: a
front end shows the message alone (the CLI: one line on stderr, exit 1), while any other
exception is a bug and keeps its traceback. The message names settings as the library
does (`grad_clip`, `resume`); a front end that calls them otherwise (the CLI's
`--grad-clip`) renders them its own way:

    raise TrainingDiverged("training diverged. Try gradient clipping (", Setting("grad_clip", 1), ").")
    str(error)                                   # training diverged. Try gradient clipping (grad_clip=1).
    error.render(lambda name: "--" + name.replace("_", "-"))   # ... (--grad-clip 1).
    error.option                                 # "grad_clip": the first setting named

The subclasses live beside the code that raises them (TextError in data, CheckpointError in
checkpoint, ...) and keep the built-in base they had (ValueError, RuntimeError), so
`except ValueError` around a library call still catches them. An ArgumentError is about
what the caller gave, as given (a front end's usage error: the CLI exits 2).

A `Notice` is a one-line note or warning the library has while it goes on (a folder's
skipped files, another text than the run's): built and rendered like a UserError, handed
to the caller's `on_note`.
What this module must not hold: command-line flags or printing (that is the CLI's).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """A setting named inside a UserError's message: `name` as rnn calls it (a TrainConfig
    field, or an argument of rnn.training.loop.train such as "resume"), and the value suggested, if any."""

    name: str
    value: object = None

    def render(self, name_of) -> str:
        named = name_of(self.name)
        if self.value is None:
            return named
        return f"{named}={self.value}" if named == self.name else f"{named} {self.value}"


def _render(parts, name_of=None) -> str:
    """Text and Setting parts as one message, each setting named by `name_of(name)` (default: rnn's own name)."""
    name_of = name_of or (lambda name: name)
    return "".join(part.render(name_of) if isinstance(part, Setting) else str(part) for part in parts)


class UserError(Exception):
    """Something the user gave cannot work. Built from text and Setting parts (see the module)."""

    def __init__(self, *parts):
        self.parts = tuple(parts)
        self.settings = tuple(part for part in self.parts if isinstance(part, Setting))
        super().__init__(self.render())

    @property
    def option(self):
        """The name of the first setting the message names (the one it is about), or None."""
        return self.settings[0].name if self.settings else None

    def render(self, name_of=None) -> str:
        """The message, each setting named by `name_of(name)` (default: rnn's own name)."""
        return _render(self.parts, name_of)


class ConfigError(UserError, ValueError):
    """A setting, or a combination of settings, that cannot work."""


class ArgumentError(ConfigError):
    """Settings or arguments the caller gave that cannot work as given, alone, together or with
    the run resumed (not a file's content): a front end's usage error."""


class Notice:
    """A one-line note or warning for the user while the work goes on: `kind` is "note" or
    "warning"; `detail`: a quiet front end may leave it out. Text and Setting parts as UserError's."""

    def __init__(self, kind: str, *parts, detail: bool = False):
        self.kind, self.parts, self.detail = kind, tuple(parts), detail

    def render(self, name_of=None) -> str:
        return _render(self.parts, name_of)

    def __str__(self):
        return self.render()

    def __repr__(self):
        return f"Notice({self.kind!r}, {self.render()!r})"


class TrainingDiverged(UserError, RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite."""


class ModelDiverged(UserError, ValueError):
    """A model whose outputs are NaN or infinite (a checkpoint saved from a diverged run)."""
