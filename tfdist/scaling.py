"""`python -m tfdist.scaling`: runs the scaling report (`tfdist.cli.scaling`)."""

if __name__ == "__main__":
    import sys

    from tfdist.cli.scaling import main

    sys.exit(main())
