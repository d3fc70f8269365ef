"""One error hierarchy for the whole toolkit; only the CLI turns these into exit codes."""


class SmopEdgeError(Exception):
    """Base class: a problem with a user-facing, one-line message."""

    exit_code = 1


class UsageError(SmopEdgeError):
    """Arguments or configuration values that cannot work together."""

    exit_code = 2


class InputError(SmopEdgeError):
    """A file that is missing, unreadable, corrupt or not what it claims to be."""

    exit_code = 3


class CheckpointError(InputError):
    """A checkpoint that cannot be opened or does not match any known model layout."""


class TokenizerError(InputError):
    """A tokenizer that is missing, unreadable or does not fit the model."""


class BundleError(SmopEdgeError):
    """An exported bundle that is invalid or has been tampered with."""

    exit_code = 4


class UnsuitableInputError(SmopEdgeError):
    """Input that lacks what the model's tasks need (e.g. no face for a VSR-only model)."""

    exit_code = 5


class ParityError(SmopEdgeError):
    """An export whose graphs drift from the torch reference beyond the thresholds for its quantization."""

    exit_code = 6
