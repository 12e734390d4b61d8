"""The Pima Indians diabetes tutorial: an 8-8-6-1 MLP, as the classic Keras 1 tutorial wrote it.

    python examples/pima.py path/to/pima-indians-diabetes.csv

Only the import lines differ from the tutorial (`from nncompile.keras...` for `from keras...`); the
Keras 1 arguments `init=` and `nb_epoch=` still work (with a DeprecationWarning naming the new
ones). 67/33 split with seed 9, batch 5, 200 epochs, as the tutorial.
"""
import sys

import numpy
from nncompile.keras.layers import Dense
from nncompile.keras.models import Sequential

path = sys.argv[1] if len(sys.argv) > 1 else "pima-indians-diabetes.csv"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 200

# fix random seed for reproducibility
seed = 9
numpy.random.seed(seed)
# load pima indians dataset (the file has a header row)
dataset = numpy.loadtxt(path, delimiter=",", skiprows=1)
X = dataset[:, 0:8]
Y = dataset[:, 8]
# split into 67% for train and 33% for test
order = numpy.random.permutation(len(X))
split = int(len(X) * 0.67)
X_train, Y_train = X[order[:split]], Y[order[:split]]
X_test, Y_test = X[order[split:]], Y[order[split:]]
# create model
model = Sequential()
model.add(Dense(8, input_dim=8, init="uniform", activation="relu"))
model.add(Dense(6, init="uniform", activation="relu"))
model.add(Dense(1, init="uniform", activation="sigmoid"))
# Compile model
model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
# Fit the model
model.fit(X_train, Y_train, validation_data=(X_test, Y_test), nb_epoch=epochs, batch_size=5, verbose=2)
# evaluate the model
scores = model.evaluate(X_test, Y_test, verbose=0)
print("%s: %.2f%%" % (model.metrics_names[1], scores[1] * 100))
