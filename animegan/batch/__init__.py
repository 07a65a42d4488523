"""Batches that outgrow one process: ``animegan batch SRC DST``.

- :mod:`.plan`: list SRC, plan every output at once, decide what the manifest has settled;
- :mod:`.manifest`: the JSON Lines record in DST that makes a batch resumable;
- :mod:`.worker`: one model turning a task into an output and a manifest row;
- :mod:`.engines`: a local process pool, or Ray Data with an actor pool;
- :mod:`.command`: the command line.
"""

from .command import add_arguments, build_parser, main, run

__all__ = ["add_arguments", "build_parser", "main", "run"]
