"""`python -m scripts.dlq`: the command line of scripts.operations.dlq."""

from scripts.operations.dlq import main

if __name__ == "__main__":
    raise SystemExit(main())
