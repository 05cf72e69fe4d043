"""``python -m mnistlab.cli``: the same as the ``mnistlab`` command."""

from mnistlab.cli import main

main()
