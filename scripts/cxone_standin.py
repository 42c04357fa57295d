"""`python -m scripts.cxone_standin`: the command line of scripts.local.cxone_standin."""

from scripts.local.cxone_standin import main

if __name__ == "__main__":
    raise SystemExit(main())
