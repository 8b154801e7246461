"""Package versions recorded with every metric result."""

import numpy as np
import torch
import torch_fidelity


def package_versions():
    """Versions of the packages that determine the metric values."""
    return {"torch": torch.__version__, "torch_fidelity": torch_fidelity.__version__, "numpy": np.__version__}
