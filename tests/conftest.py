import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# the suite never reads or writes the user's cache: a fresh one per run
import tempfile  # noqa: E402

os.environ["MEMVIZ_CACHE"] = tempfile.mkdtemp(prefix="memviz-test-cache-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import DDPMScheduler, UNet2DModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_MNIST = ROOT / "assets" / "models" / "demo-mnist"
DEMO_MNIST_TEXT = ROOT / "assets" / "models" / "demo-mnist-text"


def tiny_unet(num_class_embeds: int | None = 4, channels: int = 1, size: int = 8, seed: int = 0) -> UNet2DModel:
    """A random UNet2DModel small enough for a test (channels (4, 8), 8x8 images)."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        num_class_embeds=num_class_embeds,
    )


@pytest.fixture
def make_model():
    """Factory: a DiffusionModel around a tiny random UNet and a real DDPMScheduler."""
    from memviz.model.adapter import DiffusionModel

    def make(prediction_type: str = "epsilon", num_class_embeds: int | None = 4, **sched):
        scheduler = DDPMScheduler(prediction_type=prediction_type, **sched)
        meta = {"class_names": ["zero", "one", "two"]} if num_class_embeds else {}
        return DiffusionModel(tiny_unet(num_class_embeds), scheduler, meta=meta, device="cpu")

    return make
