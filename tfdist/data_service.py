"""`python -m tfdist.data_service`: runs a tf.data service dispatcher or data worker
(`tfdist.cli.data_service`)."""

if __name__ == "__main__":
    import sys

    from tfdist.cli.data_service import main

    sys.exit(main())
