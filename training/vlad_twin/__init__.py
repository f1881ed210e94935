"""vlad_twin — the PyTorch twin of the vlad VLA model (the model of policy/README.md; the C engine in policy/ is its other half)."""
from .config import VladConfig, default_config, smolvla_config  # noqa: F401
from .model import VladModel, load_checkpoint, random_model, save_checkpoint  # noqa: F401
