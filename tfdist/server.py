"""`python -m tfdist.server`: runs a parameter_server task's server (`tfdist.cli.server`)."""

if __name__ == "__main__":
    import sys

    from tfdist.cli.server import main

    sys.exit(main())
