"""`keras.preprocessing.image`: the image file functions of `keras.utils`, where older tutorials
import them from."""
from nncompile.keras.utils.image_utils import array_to_img, img_to_array, load_img, save_img

__all__ = ["array_to_img", "img_to_array", "load_img", "save_img"]
