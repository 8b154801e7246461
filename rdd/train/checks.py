"""Each training command's own settings checks: what single values cannot show (the network's
arguments, settings that cannot run together), without building anything.

No torch here: rdd.settings.validate runs these for the command line and, for every stage, for the
workflow's plan.
"""

from rdd import methods
from rdd.data.normalization import input_norm
from rdd.data.registry import num_classes, split_names
from rdd.nets.configs import check_unet, classifier_config


def unet_kwargs(settings):
    """UNet constructor arguments from the net settings and the dataset's shape."""
    net = dict(settings["net"])
    conditional = net.pop("class_conditional")
    data = settings["data"]
    return {"img_resolution": data["image_size"], "in_channels": data["channels"],
            "num_classes": num_classes(data) if conditional else 0, **net}


def classifier_kwargs(settings):
    """DenseNet constructor arguments from the net settings and the dataset (its classes and channels)."""
    data = settings["data"]
    return {**settings["net"], "num_classes": num_classes(data), "in_channels": data["channels"]}


def _unlabelled(data, what):
    return ValueError(f"{what} needs labelled images; the data settings give unlabelled ones "
                      f"(dataset {data['name']!r}" + (", labels: none)" if "labels" in data else ")"))


def check_teacher(settings):
    """The UNet the settings describe can be built, and a class-conditional one has classes to learn."""
    if not isinstance(conditional := settings["net"].get("class_conditional"), bool):
        raise ValueError(f"setting 'net.class_conditional' must be true or false, got {conditional!r}")
    if conditional and not num_classes(settings["data"]):
        raise _unlabelled(settings["data"], "setting 'net.class_conditional': a class-conditional teacher")
    try:
        check_unet(**unet_kwargs(settings))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting 'net': {exc}") from None
    return settings


def check_classifier(settings):
    """The classifier's net can be built and its recipe can run on its data."""
    data = settings["data"]
    if not num_classes(data):
        raise _unlabelled(data, "setting 'data': the classifier")
    if "test" not in (splits := split_names(data)):
        # Checked here, not when the job starts: in the workflow the teacher would be training by then.
        raise ValueError(f"setting 'data': the classifier measures its accuracy on the test split (and "
                         f"`train.select: best_test` keeps the best epoch's weights by it), which dataset "
                         f"{data['name']!r} does not have (splits: {', '.join(splits)}); a folder holds images "
                         "out as a test split with `test_fraction`, and in the workflow a study can take a "
                         "trained classifier instead (authors_checkpoints.classifier)")
    try:
        classifier_config(**classifier_kwargs(settings))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting 'net': {exc}") from None
    check_recipe(settings)
    return settings


def check_recipe(settings):
    """Raise ValueError, naming the setting, for recipe settings whose single values are allowed
    (rdd.settings.SETTINGS) but which cannot run together or on this dataset."""
    train = settings["train"]
    input_norm(train["input_norm"], settings["data"])
    milestones = train["lr_milestones"]  # each a fraction in (0, 1): checked by its setting's kind
    if milestones != sorted(milestones):
        raise ValueError(f"setting 'train.lr_milestones' must be increasing fractions of the run in (0, 1), "
                         f"got {milestones!r}")


def check_distill(settings):
    """The loss weights made explicit (the method's preset where a weight is null); at least one is
    not zero."""
    settings["weights"] = methods.loss_weights(settings)
    return settings


COMMANDS = {"teacher": check_teacher, "classifier": check_classifier, "distill": check_distill}
