"""A `keras.utils.PyDataset` feeding `fit`, `validation_data` and `evaluate`.

As Keras' PyDataset documentation writes one: `__init__` passing `workers`,
`use_multiprocessing` and `max_queue_size` to `super().__init__`, `__len__` in batches,
`__getitem__` returning one batch by index, and `on_epoch_end` reshuffling. The model is the MNIST
convnet of keras.io on the 8×8 digits.
"""

import math

import keras
import numpy as np
from offline_data import digits


class DigitsSequence(keras.utils.PyDataset):
    def __init__(self, x_set, y_set, batch_size, shuffle=False, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x_set, y_set
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.order = np.arange(len(self.x))
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, idx):
        rows = self.order[idx * self.batch_size : (idx + 1) * self.batch_size]
        return self.x[rows][..., None], self.y[rows]

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)


def run(strategy, fit, evaluate):
    (x_train, y_train), (x_test, y_test) = digits()
    split = int(0.9 * len(y_train))
    train = DigitsSequence(
        x_train[:split],
        y_train[:split],
        batch_size=32,
        shuffle=True,
        workers=2,
        use_multiprocessing=False,
        max_queue_size=8,
    )
    validation = DigitsSequence(x_train[split:], y_train[split:], batch_size=64)
    test = DigitsSequence(x_test, y_test, batch_size=64)
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input(shape=(8, 8, 1)),
                keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
                keras.layers.MaxPooling2D(pool_size=(2, 2)),
                keras.layers.Flatten(),
                keras.layers.Dropout(0.25),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"]
        )
    history = fit(model, train, validation_data=validation, epochs=20)
    return {"history": history.history, "test": evaluate(model, test, return_dict=True)}
