"""`python -m scripts.provision`: the command line of scripts.provisioning.cli."""

from scripts.provisioning.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
