import sys

from .cli import main

if __name__ == "__main__":  # a spawned worker process imports this module and must not run the command again
    sys.exit(main())
