"""The base of every error a user can fix: stages print its message and exit non-zero."""


class ImgclfError(Exception):
    """Bad input, configuration or environment, with a message that names the fix."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (at most 300 characters), or its type's name.

    Stores and databases answer with pages of text; one line is what a warning needs.
    """
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
