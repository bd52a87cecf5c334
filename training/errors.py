"""The one exception type for problems the user can fix (bad input, bad options, missing device)."""


class UserError(Exception):
    """Raised with a message that says what went wrong and what to do; the CLI prints it as one line."""
