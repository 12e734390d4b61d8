"""keras.ops.image against real Keras 3 on JAX (tests/fixtures/keras/ops_image: every function,
sizes up and down, each interpolation, aspect-ratio crops and pads, both data formats, batches and
single images), each eagerly, traced on the reference interpreter and compiled; gradients against
finite differences; arguments refused with Keras's messages."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from nncompile.keras import ops
from tests.keras.keras_files import fixture_module
from tests.keras.ops_harness import all_ways
from tests.passes.test_autodiff import check_gradients

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "ops_image"
DATA = np.load(FIXTURES / "ops_image.npz")


def _cases():
    return fixture_module(FIXTURES / "cases.py").CASES


CASES = _cases()
# float32 sums in another order than XLA's: a few ulps of the inputs' scale (255 for uint8 inputs
# before rounding, which a ulp can move by one)
LOOSE = {"resize_u8": 1.0, "resize_i32": 1.0}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_function_is_keras_on_jax(name):
    function, names, arguments = CASES[name]
    want = DATA[f"out_{name}"]
    # perspective_transform's points make its transform when the op is built: numbers, not inputs
    traced = names[:1] if function == "perspective_transform" else names
    fixed = [DATA[n] for n in names[len(traced):]]

    def call(*images):
        return getattr(ops.image, function)(*images, *fixed, **arguments)

    for got in all_ways(call, *(DATA[n] for n in traced)):
        got = np.asarray(got)
        assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape)
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=2e-5,
                                   atol=LOOSE.get(name, 2e-5), err_msg=name)


def test_every_keras_image_op_is_there_but_elastic_transform():
    import json
    names = json.loads((FIXTURES.parent / "ops_names" / "names.json").read_text())["image"]
    assert sorted(set(names) - set(ops.image.__all__)) == ["elastic_transform"]
    assert all(callable(getattr(ops.image, n)) for n in ops.image.__all__)


GRADIENT_CASES = {
    "resize_bilinear": lambda x: ops.image.resize(x, (5, 3)),
    "resize_bicubic_antialias": lambda x: ops.image.resize(x, (2, 7), "bicubic", antialias=True),
    "resize_pad_aspect": lambda x: ops.image.resize(x, (4, 4), pad_to_aspect_ratio=True, fill_value=0.5),
    "grayscale": ops.image.rgb_to_grayscale,
    "rgb_to_hsv": ops.image.rgb_to_hsv,
    "hsv_to_rgb": ops.image.hsv_to_rgb,
    "gaussian_blur": lambda x: ops.image.gaussian_blur(x, (3, 5), (0.9, 1.7)),
    "sobel_first": lambda x: ops.image.sobel_edges(x, data_format="channels_first"),
    "crop_pad": lambda x: ops.image.pad_images(ops.image.crop_images(x, 1, 0, 0, 1), 1, 2, 0, 1),
    "patches": lambda x: ops.image.extract_patches(x, 2, strides=1, padding="same"),
    "map_coordinates": lambda x: ops.image.map_coordinates(
        ops.sum(x, axis=(0, 3)), DATA["points"][:, :2] / 2, order=1, fill_mode="reflect"),
    "scale_and_translate": lambda x: ops.image.scale_and_translate(
        x, (2, 3, 6, 3), [0.8, 1.7], [0.2, -0.4], (1, 2), "cubic"),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_gradients_match_finite_differences(name):
    rng = np.random.default_rng(3)
    images = rng.uniform(0.05, 0.95, (2, 4, 5, 3))   # HSV's branches are flat around here

    def build(b, values):
        with ops.tracing(b):
            return GRADIENT_CASES[name](values["x"])

    check_gradients(build, {"x": images}, samples=10)


def test_ssim_gradient_and_identity():
    rng = np.random.default_rng(4)
    first, second = rng.random((2, 5, 6, 3)), rng.random((2, 5, 6, 3))

    def build(b, values):
        with ops.tracing(b):
            return ops.image.ssim(values["x"], values["y"], filter_size=3)

    check_gradients(build, {"x": first, "y": second}, samples=10)
    np.testing.assert_allclose(ops.image.ssim(first, first, filter_size=3), [1.0, 1.0], rtol=1e-12)


def test_layers_resize_and_crop_by_the_ops():
    """Resizing and CenterCrop are the ops' resize and crop: the same numbers."""
    from nncompile.keras import layers
    images = DATA["rgb"]
    np.testing.assert_allclose(layers.Resizing(3, 5, interpolation="bicubic", crop_to_aspect_ratio=True)(images),
                               ops.image.resize(images, (3, 5), "bicubic", crop_to_aspect_ratio=True), rtol=1e-6)
    np.testing.assert_array_equal(layers.CenterCrop(4, 5)(images), ops.image.crop_images(
        images, 1, 1, target_height=4, target_width=5))
    for options in (dict(pad_to_aspect_ratio=True, fill_value=0.3), dict(antialias=True),
                    dict(interpolation="lanczos5", antialias=True)):
        np.testing.assert_allclose(layers.Resizing(3, 5, **options)(images),
                                   ops.image.resize(images, (3, 5), **options), rtol=1e-6, err_msg=str(options))


IMAGE = np.zeros((2, 4, 4, 3), "float32")
ERRORS = [
    (lambda: ops.image.resize(IMAGE, (2,)), re.escape("Expected `size` to be a tuple of 2 integers. Received: size=(2,)")),
    (lambda: ops.image.resize(IMAGE, (0, 2)), "`size` must have positive height and width"),
    (lambda: ops.image.resize(IMAGE, (2, 2), crop_to_aspect_ratio=True, pad_to_aspect_ratio=True),
     "Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` can be `True`."),
    (lambda: ops.image.resize(IMAGE, (2, 2), "area"), re.escape(
        "Invalid value for argument `interpolation`. Expected of one ('bilinear', 'nearest', 'lanczos3', "
        "'lanczos5', 'bicubic'). Received: interpolation=area")),
    (lambda: ops.image.resize(IMAGE, (2, 2), fill_mode="reflect"), "Only `'constant'` is supported"),
    (lambda: ops.image.resize(IMAGE[0, 0], (2, 2)), r"Invalid images rank: expected rank 3 \(single image\) "
     r"or rank 4 \(batch of images\). Received input with shape: images.shape=\(4, 3\)"),
    (lambda: ops.image.resize(IMAGE, (2, 2), data_format="channels_middle"),
     "The `data_format` argument must be one of"),
    (lambda: ops.image.crop_images(IMAGE, 1, 1), "Must specify exactly two of top_cropping, bottom_cropping, "
     "target_height. Received: top_cropping=1, bottom_cropping=None, target_height=None"),
    (lambda: ops.image.crop_images(IMAGE, -1, 0, 1, 1), r"top_cropping must be >= 0. Received: top_cropping=-1"),
    (lambda: ops.image.crop_images(IMAGE, 3, 0, 3, 0), r"target_height must be >= 0. Received: target_height=-2"),
    (lambda: ops.image.pad_images(IMAGE, 1, 1, target_height=2, target_width=9),
     r"bottom_padding must be >= 0. Received: bottom_padding=-3"),
    (lambda: ops.image.rgb_to_grayscale(IMAGE[..., :2]), "Invalid channel size: expected 3 \\(RGB\\) or 1"),
    (lambda: ops.image.rgb_to_hsv(IMAGE.astype("int32")), "Invalid images dtype: expected float dtype. "
     "Received: images.dtype=int32"),
    (lambda: ops.image.hsv_to_rgb(IMAGE[..., :2]), "Input images must have 3 channels"),
    (lambda: ops.image.extract_patches(IMAGE, "2"), "Invalid `size` argument. Expected an int or a tuple. "
     "Received: size=2 of type str"),
    (lambda: ops.image.extract_patches(IMAGE, (2,)), "Expected a tuple of length 2 or 3"),
    (lambda: ops.image.extract_patches_3d(IMAGE[None], 2, strides=(1, 1)), "Invalid `strides` argument"),
    (lambda: ops.image.sobel_edges(IMAGE[0]), r"expected rank 4 \(batch of images\)"),
    (lambda: ops.image.ssim(IMAGE, IMAGE), "The convolution operation resulted in an empty output"),
    (lambda: ops.image.map_coordinates(IMAGE, np.zeros((3, 2)), 1), "First dim of `coordinates` must be the "
     "same as the rank of `inputs`"),
    (lambda: ops.image.map_coordinates(IMAGE[0, 0, 0], np.zeros((1, 2)), 3), "Invalid value for argument `order`"),
    (lambda: ops.image.map_coordinates(IMAGE[0, 0, 0], np.zeros((1, 2)), 1, "edge"),
     "Invalid value for argument `fill_mode`"),
    (lambda: ops.image.perspective_transform(IMAGE, np.zeros((3, 2)), np.zeros((3, 2))),
     r"Invalid start_points shape: expected \(4,2\)"),
    (lambda: ops.image.perspective_transform(IMAGE, np.zeros((4, 2)), np.zeros((2, 4, 2))),
     "start_points and end_points must have the same shape"),
    (lambda: ops.image.scale_and_translate(IMAGE, (2, 2, 2, 3), [1, 1], [0, 0], (1, 2), "nearest"),
     "Invalid value for argument `method`"),
]


@pytest.mark.parametrize("index", range(len(ERRORS)))
def test_bad_arguments_are_refused_with_keras_messages(index):
    call, message = ERRORS[index]
    with pytest.raises((ValueError, TypeError), match=message):
        call()
