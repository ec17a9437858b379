"""`python -m tfdist.train`: runs the trainer's command line (`tfdist.cli.train`)."""

if __name__ == "__main__":
    import sys

    from tfdist.cli.train import main

    sys.exit(main())
