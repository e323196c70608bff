"""`python -m astrobio_cli` behaves as `astrobio` (so `accelerate launch -m astrobio_cli` works)."""

from astrobio_cli.cli import main

if __name__ == "__main__":
    main()
