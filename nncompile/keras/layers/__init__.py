"""Keras layers: `from nncompile.keras import layers; layers.Dense(10)`."""
from nncompile.keras.input_layer import Input, InputLayer
from nncompile.keras.layers.base import Layer
from nncompile.keras.layers.augmentation import (RandomBrightness, RandomContrast, RandomCrop, RandomFlip,
                                                 RandomRotation, RandomTranslation, RandomZoom)
from nncompile.keras.layers.color_augmentation import (RandomColorDegeneration, RandomColorJitter,
                                                       RandomGrayscale, RandomHue, RandomInvert,
                                                       RandomPosterization, RandomSaturation, Solarization)
from nncompile.keras.layers.geometric_augmentation import RandomPerspective, RandomShear
from nncompile.keras.layers.image_preprocessing import CenterCrop, Resizing
from nncompile.keras.layers.pixel_augmentation import (AutoContrast, Equalization, RandomErasing,
                                                       RandomGaussianBlur, RandomSharpness)
from nncompile.keras.layers.lambda_layer import Lambda
from nncompile.keras.layers.input_spec import InputSpec
from nncompile.keras.layers.attention import (AdditiveAttention, Attention, GroupedQueryAttention,
                                             GroupQueryAttention, MultiHeadAttention)
from nncompile.keras.layers.conv import (Conv1D, Conv2D, Conv3D, Convolution1D, Convolution2D,
                                         Convolution3D)
from nncompile.keras.layers.conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from nncompile.keras.layers.conv_transpose import (Conv1DTranspose, Conv2DTranspose,
                                                   Conv3DTranspose, Convolution1DTranspose,
                                                   Convolution2DTranspose, Convolution3DTranspose)
from nncompile.keras.layers.depthwise_conv import (DepthwiseConv1D, DepthwiseConv2D,
                                                   SeparableConv1D, SeparableConv2D,
                                                   SeparableConvolution1D, SeparableConvolution2D)
from nncompile.keras.layers.einsum_dense import EinsumDense
from nncompile.keras.layers.core import (ELU, Activation, Dense, Dropout, Embedding, Flatten,
                                         Identity, LeakyReLU, Masking, Permute, PReLU, ReLU,
                                         Reshape, Softmax)
from nncompile.keras.layers.merging import (Add, Average, Concatenate, Dot, Maximum, Minimum,
                                            Multiply, Subtract, add, average, concatenate, dot,
                                            maximum, minimum, multiply, subtract)
from nncompile.keras.layers.noise import (AlphaDropout, GaussianDropout, GaussianNoise,
                                          SpatialDropout1D, SpatialDropout2D, SpatialDropout3D)
from nncompile.keras.layers.normalization import (BatchNormalization, GroupNormalization,
                                                  LayerNormalization, RMSNormalization, UnitNormalization)
from nncompile.keras.layers.pooling import (AdaptiveAveragePooling1D, AdaptiveAveragePooling2D,
                                            AdaptiveAveragePooling3D, AdaptiveMaxPooling1D,
                                            AdaptiveMaxPooling2D, AdaptiveMaxPooling3D, AveragePooling1D, AveragePooling2D,
                                            AveragePooling3D, AvgPool1D, AvgPool2D, AvgPool3D,
                                            GlobalAveragePooling1D, GlobalAveragePooling2D,
                                            GlobalAveragePooling3D, GlobalAvgPool1D,
                                            GlobalAvgPool2D, GlobalAvgPool3D, GlobalMaxPool1D,
                                            GlobalMaxPool2D, GlobalMaxPool3D, GlobalMaxPooling1D,
                                            GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPool1D,
                                            MaxPool2D, MaxPool3D, MaxPooling1D, MaxPooling2D,
                                            MaxPooling3D)
from nncompile.keras.layers.preprocessing import CategoryEncoding, Discretization, Normalization, Rescaling
from nncompile.keras.layers.regularization import ActivityRegularization
from nncompile.keras.layers.recurrent import GRU, LSTM, RNN, SimpleRNN
from nncompile.keras.layers.recurrent_cells import (GRUCell, LSTMCell, SimpleRNNCell,
                                                    StackedRNNCells)
from nncompile.keras.layers.reshaping import (Cropping1D, Cropping2D, Cropping3D, RepeatVector,
                                              UpSampling1D, UpSampling2D, UpSampling3D,
                                              ZeroPadding1D, ZeroPadding2D, ZeroPadding3D)
from nncompile.keras.layers.wrappers import Bidirectional, TimeDistributed, Wrapper

__all__ = [
    "Activation", "ActivityRegularization", "AutoContrast", "Equalization", "RandomColorDegeneration",
    "RandomColorJitter", "RandomErasing", "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert",
    "RandomPerspective", "RandomPosterization", "RandomSaturation", "RandomSharpness", "RandomShear",
    "Solarization", "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D",
    "AdaptiveAveragePooling3D", "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D", "Add",
    "AdditiveAttention", "AlphaDropout", "Attention", "GroupQueryAttention", "GroupedQueryAttention", "Average", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "BatchNormalization", "Bidirectional", "CategoryEncoding", "CenterCrop", "Concatenate", "Conv1D",
    "Conv1DTranspose", "Conv2D", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "Convolution1D",
    "Convolution1DTranspose", "Convolution2D", "Convolution2DTranspose", "Convolution3D",
    "Convolution3DTranspose", "Cropping1D", "Cropping2D", "Cropping3D", "Dense",
    "DepthwiseConv1D", "DepthwiseConv2D", "Discretization", "Dot", "Dropout", "ELU", "EinsumDense",
    "Embedding", "Flatten", "GRU",
    "GRUCell", "GaussianDropout", "GaussianNoise", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalAvgPool1D", "GlobalAvgPool2D",
    "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GroupNormalization",
    "Identity", "Input", "InputLayer", "InputSpec", "LSTM", "LSTMCell", "Lambda", "Layer",
    "LayerNormalization", "LeakyReLU", "Masking", "MaxPool1D", "MaxPool2D", "MaxPool3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "Maximum", "Minimum", "MultiHeadAttention",
    "Multiply", "Normalization", "PReLU", "Permute", "RMSNormalization", "RNN", "RandomBrightness",
    "RandomContrast", "RandomCrop", "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "ReLU",
    "RepeatVector", "Rescaling",
    "Reshape", "Resizing", "SeparableConv1D", "SeparableConv2D",
    "SeparableConvolution1D", "SeparableConvolution2D", "SimpleRNN", "SimpleRNNCell",
    "Softmax", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "StackedRNNCells", "Subtract",
    "TimeDistributed", "UnitNormalization", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Wrapper",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "add", "average", "concatenate", "maximum",
    "minimum", "multiply", "subtract", "dot"
]
