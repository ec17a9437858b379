"""keras.io's "Structured data classification with FeatureSpace", on a dict of columns.

As the example writes it: a `tf.data.Dataset` of (dict of features, label) from a table,
batched; a `keras.utils.FeatureSpace` of normalized floats, an integer and a string
categorical (one-hot) and a crossing, adapted on the features alone; the datasets mapped
through it (`num_parallel_calls`, `prefetch`); a model on `get_encoded_features()`
trained on the preprocessed datasets. The table is made offline from the digits: the
pixel sums of a 4×4 grid as sixteen float columns, a string column and an integer
column drawn at random (no signal: the model must learn to ignore them), and the digit
as the label.
"""

import keras
import numpy as np
import tensorflow as tf
from keras.utils import FeatureSpace
from offline_data import digits

GRID = [f"cell_{row}{col}" for row in range(4) for col in range(4)]


def table(images, labels, seed):
    """({column: values}, labels): the columns of the example's dataframe."""
    rng = np.random.default_rng(seed)
    cells = images.reshape(-1, 4, 2, 4, 2).sum(axis=(2, 4))
    columns = {name: cells[:, i // 4, i % 4] for i, name in enumerate(GRID)}
    columns["pen"] = rng.choice(np.array(["ballpoint", "pencil", "marker"]), size=len(labels))
    columns["desk"] = rng.integers(0, 4, size=len(labels)).astype(np.int64)
    return columns, labels


def dataframe_to_dataset(columns, labels):
    ds = tf.data.Dataset.from_tensor_slices((columns, labels))
    return ds.shuffle(buffer_size=len(labels), seed=0)


def run(strategy, fit, evaluate):
    (x_train, y_train), (x_test, y_test) = digits()
    split = int(0.8 * len(y_train))
    train_ds = dataframe_to_dataset(*table(x_train[:split], y_train[:split], 1)).batch(32)
    val_ds = dataframe_to_dataset(*table(x_train[split:], y_train[split:], 2)).batch(32)
    test_ds = dataframe_to_dataset(*table(x_test, y_test, 3)).batch(32)

    features = {name: FeatureSpace.float_normalized() for name in GRID}
    features["pen"] = FeatureSpace.string_categorical(num_oov_indices=0)
    features["desk"] = FeatureSpace.integer_categorical(num_oov_indices=0)
    feature_space = FeatureSpace(
        features=features,
        crosses=[FeatureSpace.cross(feature_names=("pen", "desk"), crossing_dim=16)],
        output_mode="concat",
    )
    train_ds_with_no_labels = train_ds.map(lambda x, _: x)
    feature_space.adapt(train_ds_with_no_labels)

    preprocessed_train_ds = train_ds.map(
        lambda x, y: (feature_space(x), y), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)
    preprocessed_val_ds = val_ds.map(
        lambda x, y: (feature_space(x), y), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)
    preprocessed_test_ds = test_ds.map(
        lambda x, y: (feature_space(x), y), num_parallel_calls=tf.data.AUTOTUNE
    )

    with strategy.scope():
        encoded_features = feature_space.get_encoded_features()
        x = keras.layers.Dense(64, activation="relu")(encoded_features)
        x = keras.layers.Dropout(0.2)(x)
        predictions = keras.layers.Dense(10, activation="softmax")(x)
        training_model = keras.Model(inputs=encoded_features, outputs=predictions)
        training_model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    history = fit(
        training_model, preprocessed_train_ds, epochs=20, validation_data=preprocessed_val_ds
    )
    return {
        "history": history.history,
        "test": evaluate(training_model, preprocessed_test_ds, return_dict=True),
    }
