"""``python -m vae_lib`` and the ``vae-lib`` script: see ``vae_lib.cli``."""
import sys

from vae_lib.cli import main as _run


def main() -> None:
    sys.exit(_run())


if __name__ == "__main__":
    main()
