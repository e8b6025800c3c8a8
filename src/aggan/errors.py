"""The one exception type users see: a problem with their input, named in one line."""


class AgganError(Exception):
    """Bad input from the user: a file, a folder, a flag or a checkpoint.

    The CLI prints ``aggan: error: <message>`` and exits with status 2; the message must name the
    file or flag at fault and fit on one line.
    """
