"""Cases: how many steps an epoch has, and which validation batches run when.

Keras (`trainers/epoch_iterator.py`): arrays make `ceil(n / batch_size)` batches, the
partial last one a step of its own (10 examples at batch 4: 3 steps); `batch_size`
defaults to 32; `steps_per_epoch` on arrays stops an epoch early or ends it when the
data runs out (the next epoch continues the iteration where it stopped, until the data
is used up); `validation_steps` caps the validation batches, `validation_batch_size`
sets their size, `validation_freq` (an int or a list of 1-based epochs) says which
epochs validate; `initial_epoch` is the index of the first epoch run.
"""

from conformance import case, evaluate_observed, fit_observed
from tiny import features, regressor, targets

VALIDATION = (features(12, seed=3), targets(12, seed=4))


def _ten_at_batch_two(front, **kwargs):
    """10 examples at batch 2 (5 steps an epoch), with `kwargs` for `fit`."""
    return fit_observed(front, regressor(front), features(10), targets(10), batch_size=2, **kwargs)


def _eight_at_batch_four(front, **kwargs):
    """8 examples at batch 4 (2 steps an epoch), with `kwargs` for `fit`."""
    return fit_observed(front, regressor(front), features(8), targets(8), batch_size=4, **kwargs)


@case("steps")
def partial_last_batch_is_a_step(front):
    """10 examples at batch 4: steps 0, 1, 2 (4, 4 and 2 examples)."""
    return fit_observed(front, regressor(front), features(10), targets(10), batch_size=4, epochs=2)


@case("steps")
def fewer_examples_than_batch_size(front):
    """5 examples at batch 8: one step of 5."""
    return fit_observed(front, regressor(front), features(5), targets(5), batch_size=8, epochs=2)


@case("steps")
def default_batch_size_is_32(front):
    """40 examples, no batch_size: batches of 32 and 8."""
    return fit_observed(front, regressor(front), features(40), targets(40), epochs=2)


@case("steps")
def fewer_examples_than_the_default_batch(front):
    """20 examples, no batch_size (32): one step of 20."""
    return fit_observed(front, regressor(front), features(20), targets(20), epochs=2)


@case("steps")
def steps_per_epoch_below_the_batches_of_arrays(front):
    """5 batches, steps_per_epoch=3: epoch 0 runs batches 0-2, epoch 1 batches 3-4 and
    ends there (the data ran out); epoch 2 starts again from batch 0."""
    return _ten_at_batch_two(front, epochs=3, steps_per_epoch=3)


@case("steps")
def steps_per_epoch_above_the_batches_of_arrays(front):
    """5 batches, steps_per_epoch=7: each epoch ends after the 5 batches there are."""
    return _ten_at_batch_two(front, epochs=2, steps_per_epoch=7)


@case("steps")
def validation_steps_caps_the_validation_batches(front):
    """12 validation examples at batch 4 are 3 batches; validation_steps=2 runs 2."""
    return _eight_at_batch_four(front, epochs=2, validation_data=VALIDATION, validation_steps=2)


@case("steps")
def validation_batch_size(front):
    """validation_batch_size=5: 12 validation examples in batches of 5, 5 and 2."""
    return _eight_at_batch_four(
        front, epochs=1, validation_data=VALIDATION, validation_batch_size=5
    )


@case("steps")
def validation_freq_every_second_epoch(front):
    """validation_freq=2 over 3 epochs: only epoch index 1 validates (val_* only there)."""
    return _eight_at_batch_four(front, epochs=3, validation_data=VALIDATION, validation_freq=2)


@case("steps")
def validation_freq_as_a_list_of_epochs(front):
    """validation_freq=[1, 3] (1-based): epoch indices 0 and 2 validate."""
    return _eight_at_batch_four(front, epochs=3, validation_data=VALIDATION, validation_freq=[1, 3])


@case("steps")
def initial_epoch_is_the_first_epoch_index(front):
    """initial_epoch=1, epochs=3: epochs 1 and 2 run; History.epoch is [1, 2]."""
    return _eight_at_batch_four(front, epochs=3, initial_epoch=1)


@case("steps")
def evaluate_with_fewer_examples_than_the_default_batch(front):
    """evaluate on 5 examples, no batch_size: one batch, every example counted once."""
    model = regressor(front, metrics=["mae"])
    return evaluate_observed(front, model, features(5), targets(5), return_dict=True)


@case("steps")
def evaluate_steps_on_arrays(front):
    """evaluate(steps=2) on 10 examples at batch 4: the first 2 batches (8 examples)."""
    model = regressor(front, metrics=["mae"])
    return evaluate_observed(
        front, model, features(10), targets(10), batch_size=4, steps=2, return_dict=True
    )


@case("steps")
def predict_partial_last_batch_in_order(front):
    """predict on 11 examples at batch 4: all 11 rows, in order."""
    model = regressor(front, hidden=3)
    return {"predictions": front.predict(model, features(11), batch_size=4, verbose=0)}
