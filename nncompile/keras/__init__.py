"""The Keras-compatible front end: `from nncompile import keras`."""
