"""MediaError, in a module of its own so the watchdog, the sequence and movie readers and shots.media
can all raise it without importing each other."""
from __future__ import annotations


class MediaError(Exception):
    """A media file is missing, unreadable or not what was asked; the message names file and frame."""

    def __init__(self, path, problem: str, frame: int | None = None):
        self.path, self.problem, self.frame = str(path), problem, frame
        where = self.path if frame is None else f"{self.path}, frame {frame}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # keep it picklable across worker processes
        return (type(self), (self.path, self.problem, self.frame))

