"""What the launcher writes its tasks' output to: any text sink with `write` and `flush`.

Owns `TextSink`, the one type every output parameter of `launch` takes: a file or
`sys.stdout`, an `io.StringIO`, or a filter such as `launch.noise.QuietOutput`.
"""

from typing import Protocol


class TextSink(Protocol):
    """A text stream as the launcher uses one: whole lines written, then flushed."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...
