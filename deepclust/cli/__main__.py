"""``python -m deepclust.cli``: the library's command line (as ``python -m deepclust``)."""

from deepclust.cli import main

if __name__ == "__main__":
    main()
