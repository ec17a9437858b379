"""TensorFlow's "Basic text classification" tutorial: files → TextVectorization → a model.

As the tutorial writes it: `text_dataset_from_directory` over class folders, a
`TextVectorization` layer adapted on the text alone and mapped into the tf.data pipeline
(`.cache().prefetch()`), then Embedding → Dropout → GlobalAveragePooling1D → Dropout →
Dense(1) with `BinaryCrossentropy(from_logits=True)`, validated and evaluated on their own
datasets. Its review files are generated offline here: a sentence per digit label, whose
class is whether the digit named in it is even (`write_reviews`).
"""

import os

import numpy as np
import tensorflow as tf
from offline_data import digits
from tensorflow.keras import layers, losses

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FILLERS = ["the", "a", "film", "was", "really", "quite", "not", "very", "plot", "actor"]


def write_reviews(directory, labels, seed):
    """One file a label under directory/{neg,pos}: pos when the digit named is even."""
    rng = np.random.default_rng(seed)
    for name in ("neg", "pos"):
        os.makedirs(os.path.join(directory, name), exist_ok=True)
    for i, label in enumerate(labels):
        words = list(rng.choice(FILLERS, size=6)) + [WORDS[label]]
        rng.shuffle(words)
        folder = "pos" if label % 2 == 0 else "neg"
        with open(os.path.join(directory, folder, f"{i}.txt"), "w") as f:
            f.write(" ".join(words))


def run(strategy, fit, evaluate, working_dir):
    (_, y_train), (_, y_test) = digits()
    write_reviews(os.path.join(working_dir, "train"), y_train, seed=1)
    write_reviews(os.path.join(working_dir, "test"), y_test, seed=2)

    batch_size = 32
    seed = 42
    raw_train_ds = tf.keras.utils.text_dataset_from_directory(
        os.path.join(working_dir, "train"),
        batch_size=batch_size,
        validation_split=0.2,
        subset="training",
        seed=seed,
    )
    raw_val_ds = tf.keras.utils.text_dataset_from_directory(
        os.path.join(working_dir, "train"),
        batch_size=batch_size,
        validation_split=0.2,
        subset="validation",
        seed=seed,
    )
    raw_test_ds = tf.keras.utils.text_dataset_from_directory(
        os.path.join(working_dir, "test"), batch_size=batch_size
    )

    max_features = 100
    sequence_length = 10
    vectorize_layer = layers.TextVectorization(
        max_tokens=max_features, output_mode="int", output_sequence_length=sequence_length
    )
    train_text = raw_train_ds.map(lambda x, y: x)
    vectorize_layer.adapt(train_text)

    def vectorize_text(text, label):
        text = tf.expand_dims(text, -1)
        return vectorize_layer(text), label

    train_ds = raw_train_ds.map(vectorize_text)
    val_ds = raw_val_ds.map(vectorize_text)
    test_ds = raw_test_ds.map(vectorize_text)

    autotune = tf.data.AUTOTUNE
    train_ds = train_ds.cache().prefetch(buffer_size=autotune)
    val_ds = val_ds.cache().prefetch(buffer_size=autotune)
    test_ds = test_ds.cache().prefetch(buffer_size=autotune)

    embedding_dim = 16
    with strategy.scope():
        model = tf.keras.Sequential(
            [
                layers.Embedding(max_features, embedding_dim),
                layers.Dropout(0.2),
                layers.GlobalAveragePooling1D(),
                layers.Dropout(0.2),
                layers.Dense(1),
            ]
        )
        model.compile(
            loss=losses.BinaryCrossentropy(from_logits=True),
            optimizer="adam",
            metrics=[tf.metrics.BinaryAccuracy(threshold=0.0)],
        )

    epochs = 10
    history = fit(model, train_ds, validation_data=val_ds, epochs=epochs)
    return {"history": history.history, "test": evaluate(model, test_ds, return_dict=True)}
