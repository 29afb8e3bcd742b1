"""The errors this project raises for bad input, each with a message of one line that names the
problem and the fix (the scripts print it and exit with status 2)."""


class MissingDataError(FileNotFoundError):
    """A data file is missing; the message says how to get it."""


class CheckpointError(ValueError):
    """A checkpoint or model directory is missing, unreadable or does not fit the model."""
