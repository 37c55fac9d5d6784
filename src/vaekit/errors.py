"""The one exception type vaekit raises for bad input; the CLI turns it into a one-line error."""


class VaekitError(Exception):
    """Bad input a user can fix: the message names the culprit and the problem."""
