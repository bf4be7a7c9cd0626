"""The base of every error a user can fix: stages print its message and exit non-zero."""


class ImgclfError(Exception):
    """Bad input, configuration or environment, with a message that names the fix."""
