"""``python -m ssa_fast.cli``: the ``ssa-fast`` command line."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
