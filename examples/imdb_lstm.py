"""The IMDB sentiment tutorial: Embedding(10000, 128) -> LSTM(128) -> Dense(1, sigmoid) on reviews
padded to 200 words, Adam, binary crossentropy, 3 epochs in batches of 64.

    python examples/imdb_lstm.py [epochs]

Only the import lines differ from the Keras tutorial. `imdb.load_data()` downloads imdb.npz into
~/.keras/datasets when online; offline it says where to put the file.
"""
import sys

from nncompile import keras
from nncompile.keras import layers
from nncompile.keras.datasets import imdb

max_features = 10000  # the most frequent words kept
maxlen = 200  # words kept of each review
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3

(x_train, y_train), (x_val, y_val) = imdb.load_data(num_words=max_features)
print(len(x_train), "Training sequences")
print(len(x_val), "Validation sequences")
x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)

model = keras.Sequential([
    keras.Input(shape=(maxlen,), dtype="int32"),
    layers.Embedding(max_features, 128),
    layers.LSTM(128),
    layers.Dense(1, activation="sigmoid"),
])
model.summary()

model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=64, epochs=epochs, validation_data=(x_val, y_val))
