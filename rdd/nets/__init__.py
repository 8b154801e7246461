"""Networks: the DDPM UNet (teachers and students) and the DenseNet feature classifier.

Their arguments and presets (rdd.nets.configs) import no torch (see rdd.lazy).
"""

from rdd import lazy

_MODULE_OF = {
    "CLASSIFIERS": "configs", "check_unet": "configs", "classifier_config": "configs",
    "build_classifier": "build", "build_unet": "build", "classifier_kwargs_of": "build",
    "DenseNet": "densenet", "from_authors_names": "densenet",
    "UNet": "unet", "load_authors_state_dict": "unet",
}
__all__ = sorted(_MODULE_OF)
__getattr__, __dir__ = lazy.exports(__name__, _MODULE_OF)
