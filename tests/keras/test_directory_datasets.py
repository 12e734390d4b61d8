"""Image and text folders as `keras.utils` reads them, against what real Keras 3 made of the
same files (tests/fixtures/keras/directories): the files picked and their order with a seed, the
training / validation split, labels, and the images as Keras's "grain" format loads them; and
load_img / img_to_array / array_to_img / save_img."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("PIL", reason="keras.utils' image files need Pillow, as Keras's do")

from nncompile import keras  # noqa: E402
from nncompile.keras.utils import image_utils  # noqa: E402
from tests.keras.keras_files import fixture_module  # noqa: E402

HERE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "keras", "directories")
PHOTOS, TEXTS = os.path.join(HERE, "photos"), os.path.join(HERE, "texts")
EXPECTED = np.load(os.path.join(HERE, "expected.npz"))
with open(os.path.join(HERE, "order.json")) as f:
    ORDER = json.load(f)
CASES = fixture_module(os.path.join(HERE, "directory_cases.py")).CASES


def _relative(paths):
    return [os.path.relpath(p, HERE) for p in paths]


@pytest.mark.parametrize("case", CASES)
def test_images_labels_and_order_are_keras_s(case):
    data = keras.utils.image_dataset_from_directory(PHOTOS, batch_size=4, verbose=False, **CASES[case])
    assert data.class_names == ["cats", "dogs"]
    assert _relative(data.file_paths) == ORDER[case]
    images, labels = zip(*data)
    np.testing.assert_array_equal(np.concatenate(labels), EXPECTED[f"{case}_labels"])
    np.testing.assert_allclose(np.concatenate(images), EXPECTED[f"{case}_images"], rtol=1e-5, atol=1e-4)
    assert len(data) == -(-len(ORDER[case]) // 4)


def test_both_subsets_label_modes_and_unbatched():
    train, val = keras.utils.image_dataset_from_directory(PHOTOS, validation_split=0.3, subset="both", seed=5,
                                                          image_size=(6, 9), label_mode="categorical",
                                                          batch_size=None, verbose=False)
    assert _relative(train.file_paths) == ORDER["split_training"]
    assert _relative(val.file_paths) == ORDER["split_validation"]
    image, label = val[1]
    np.testing.assert_allclose(image, EXPECTED["split_validation_images"][1], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(label, np.eye(2)[EXPECTED["split_validation_labels"][1]])
    binary = keras.utils.image_dataset_from_directory(PHOTOS, seed=3, image_size=(8, 8), label_mode="binary",
                                                      verbose=False)
    np.testing.assert_array_equal(binary[0][1], EXPECTED["default_labels"][:, None].astype(np.float32))
    unlabelled = keras.utils.image_dataset_from_directory(PHOTOS, labels=None, seed=3, image_size=(8, 8),
                                                          verbose=False)
    assert unlabelled.class_names is None and _relative(unlabelled.file_paths) == ORDER["unlabelled"]
    assert unlabelled[0].shape == (10, 8, 8, 3)


def test_texts_and_given_labels():
    data = keras.utils.text_dataset_from_directory(TEXTS, seed=7, max_length=4, batch_size=2, verbose=False)
    assert _relative(data.file_paths) == ORDER["texts"] and data.class_names == ["neg", "pos"]
    texts, labels = zip(*data)
    want = []
    for path in ORDER["texts"]:
        with open(os.path.join(HERE, path)) as f:
            want.append(f.read()[:4])
    assert list(np.concatenate(texts)) == want
    np.testing.assert_array_equal(np.concatenate(labels), EXPECTED["texts_labels"])
    given = [3, 1, 2, 1, 1, 3]
    listed = keras.utils.text_dataset_from_directory(TEXTS, labels=given, shuffle=False, verbose=False)
    assert listed.class_names == ["1", "2", "3"] and given == [3, 1, 2, 1, 1, 3]
    np.testing.assert_array_equal(listed[0][1], given)


def test_a_model_trains_on_an_image_folder():
    data = keras.utils.image_dataset_from_directory(PHOTOS, seed=3, image_size=(8, 8), batch_size=3, verbose=False)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(data, epochs=8, verbose=0).history["loss"]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("index, kwargs", list(enumerate([
    dict(), dict(target_size=(5, 6)), dict(target_size=(6, 5), interpolation="bilinear"),
    dict(target_size=(4, 8), keep_aspect_ratio=True, interpolation="bicubic"),
    dict(color_mode="grayscale"), dict(color_mode="rgba", target_size=(3, 3))])))
def test_load_img_and_img_to_array(index, kwargs):
    got = keras.utils.img_to_array(keras.utils.load_img(os.path.join(PHOTOS, "cats", "b.png"), **kwargs))
    np.testing.assert_array_equal(got, EXPECTED[f"load_{index}"])


def test_array_to_img_and_save_img(tmp_path):
    wide = np.random.default_rng(2).random((4, 5, 3)) * 3 - 1
    np.testing.assert_array_equal(keras.utils.img_to_array(keras.utils.array_to_img(wide)),
                                  EXPECTED["array_to_img_scaled"])
    first = keras.utils.array_to_img(wide.transpose(2, 0, 1) * 90, data_format="channels_first", scale=False)
    np.testing.assert_array_equal(keras.utils.img_to_array(first, data_format="channels_first"),
                                  EXPECTED["array_to_img_first"])
    path = str(tmp_path / "out.png")
    keras.utils.save_img(path, EXPECTED["load_0"], scale=False)
    np.testing.assert_array_equal(keras.utils.img_to_array(keras.utils.load_img(path)), EXPECTED["load_0"])
    with pytest.warns(UserWarning, match="JPEG format does not support RGBA"):
        keras.utils.save_img(str(tmp_path / "out.jpg"), np.ones((2, 2, 4)))


def test_bad_arguments_get_keras_s_messages(monkeypatch):
    folder = keras.utils.image_dataset_from_directory
    with pytest.raises(ValueError, match="you must provide a `seed` argument"):
        folder(PHOTOS, validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match='`label_mode="binary"`, there must be exactly 2 class_names'):
        keras.utils.text_dataset_from_directory(TEXTS, labels=[1, 2, 3, 1, 2, 3], label_mode="binary")
    with pytest.raises(ValueError, match="The `class_names` passed did not match"):
        folder(PHOTOS, class_names=["cats", "birds"])
    with pytest.raises(ValueError, match="No images found in directory"):
        folder(os.path.join(PHOTOS, "dogs", "nested"), verbose=False)
    with pytest.raises(ValueError, match="Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio`"):
        folder(PHOTOS, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)
    with pytest.raises(ValueError, match="Argument `interpolation` should be one of"):
        folder(PHOTOS, interpolation="cubic-ish")
    monkeypatch.setattr(image_utils, "_pil", None)
    with pytest.raises(ImportError, match="The use of `load_img` requires PIL"):
        keras.utils.load_img(os.path.join(PHOTOS, "cats", "a.png"))
