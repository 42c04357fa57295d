"""`python -m scripts.package`: the command line of scripts.packaging.template."""

from scripts.packaging.template import main

if __name__ == "__main__":
    raise SystemExit(main())
