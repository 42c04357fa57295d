"""`python -m scripts.replay`: the command line of scripts.operations.replay."""

from scripts.operations.replay import main

if __name__ == "__main__":
    raise SystemExit(main())
