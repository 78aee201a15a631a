"""``python -m tokenswarm`` is the ``tokenswarm`` command."""

from tokenswarm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
