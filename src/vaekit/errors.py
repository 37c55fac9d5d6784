"""The one exception type vaekit raises for bad input; the CLI turns it into a one-line error."""


class VaekitError(Exception):
    """Bad input a user can fix: the message names the culprit and the problem, on one line
    (a library's multi-line message quoted in it is folded)."""

    def __init__(self, message: str = ""):
        super().__init__(" ".join(str(message).split()))
