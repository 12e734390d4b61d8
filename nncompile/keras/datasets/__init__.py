"""`keras.datasets`: Keras's loaders, with its file names, download origins, cache folder
(`$KERAS_HOME/datasets`, default `~/.keras/datasets`) and checksums.

`keras.datasets.mnist.load_data()` downloads the file once when online; offline it raises one
error that names the file to put where.
"""
from nncompile.keras.datasets import boston_housing, cifar10, fashion_mnist, imdb, mnist

__all__ = ["boston_housing", "cifar10", "fashion_mnist", "imdb", "mnist"]
