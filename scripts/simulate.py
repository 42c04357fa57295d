"""`python -m scripts.simulate`: the command line of scripts.traffic.simulate."""

from scripts.traffic.simulate import main

if __name__ == "__main__":
    raise SystemExit(main())
