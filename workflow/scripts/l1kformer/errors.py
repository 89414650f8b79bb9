"""The one error type for bad input: it names the file (or config key) and the problem."""


class InputError(Exception):
    """Bad input that the user must fix. ``str()`` is a single line: ``<where>: <problem>``."""

    def __init__(self, where, problem):
        self.where = str(where)
        self.problem = " ".join(str(problem).split())  # keep it on one line
        super().__init__(f"{self.where}: {self.problem}")
