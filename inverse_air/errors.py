"""The one exception type the CLI turns into a one-line message and exit code 1."""


class UserError(Exception):
    """Bad input from the user (a file, a directory, an option). The message is one line that
    names the bad input; the CLI prints it without a traceback and exits with status 1."""
