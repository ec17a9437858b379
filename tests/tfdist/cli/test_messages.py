"""The CLI spells the library's API terms as its flags."""

import pytest

from tfdist.cli.messages import with_flag_spellings

FLAGS = [
    "strategy",
    "shard_policy",
    "model_dir",
    "train_files",
    "num_classes",
    "label_key",
    "feature_spec",
    "model",
]


@pytest.mark.parametrize(
    "library, cli",
    [
        (
            "use strategy='parameter_server' or remove the ps job.",
            "use --strategy=parameter_server or remove the ps job.",
        ),
        (
            "use fewer workers or shard_policy='data' (or 'auto').",
            "use fewer workers or --shard_policy=data (or 'auto').",
        ),
        (
            "e.g. train_files='data/train-*.tfrecord'.",
            "e.g. --train_files='data/train-*.tfrecord'.",
        ),
        ("pass num_classes=11 or more.", "pass --num_classes=11 or more."),
        (
            "model_dir (/x/sub) is not writable; pass a model_dir this process can write.",
            "--model_dir (/x/sub) is not writable; pass a --model_dir this process can write.",
        ),
        (
            "pass label_key='NAME' or add it to feature_spec.",
            "pass --label_key=NAME or add it to --feature_spec.",
        ),
        # Already flags, paths, quoted names, other words and bare words without '_' stay.
        (
            "run with --model_dir=/tmp/model_dir/x and --strategy=mirrored",
            "run with --model_dir=/tmp/model_dir/x and --strategy=mirrored",
        ),
        (
            "no feature 'label_key' in this model; strategy 'mirrored' chose my_model_dir",
            "no feature 'label_key' in this model; strategy 'mirrored' chose my_model_dir",
        ),
    ],
)
def test_api_terms_become_flags(library, cli):
    assert with_flag_spellings(library, FLAGS) == cli


def test_names_that_are_not_flags_stay():
    assert with_flag_spellings("pass steps_per_loop=4", ["strategy"]) == "pass steps_per_loop=4"
    assert with_flag_spellings("pass model_dir", []) == "pass model_dir"
