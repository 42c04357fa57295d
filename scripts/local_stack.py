"""`python -m scripts.local_stack`: the command line of scripts.local.stack."""

from scripts.local.stack import main

if __name__ == "__main__":
    raise SystemExit(main())
