"""Load a local diffusers model folder for ``DiffusionModel.from_pretrained``.

Every failure becomes one ``ValueError`` sentence that names the missing or broken
part; diffusers' own stack traces never reach the user. Nothing is downloaded:
every load uses ``local_files_only=True``. Weights load from safetensors only: pickled
weights (``.bin``, ``.pt``, ``.ckpt``, ``.pth``) run code when loaded, so a folder that has
only those is refused with how to convert it, and is never unpickled.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import diffusers

from memviz.io.assets import BUNDLED
from memviz.io.files import write_json

UNETS = ("UNet2DModel", "UNet2DConditionModel", "MLPDenoiser")
HINT = "give a diffusers model folder (model_index.json, or unet/ and scheduler/)"


def bundled_models() -> list[str]:
    """Names of the demo models shipped inside the package ("demo-mnist", "demo-mnist-text", "demo-toy")."""
    return sorted(p.name for p in BUNDLED.iterdir() if (p / "unet").is_dir()) if BUNDLED.is_dir() else []


def model_path(model: str | Path) -> Path:
    """The one rule for finding a model: a bundled demo's name is its folder in the package
    (``memviz.io.assets.BUNDLED / NAME``); anything else is a path to a local folder."""
    if isinstance(model, str) and model in bundled_models():
        return BUNDLED / model
    return Path(model).expanduser()


def load_components(path: Path, lazy: bool = False) -> dict[str, Any]:
    """unet, scheduler, and (where present) vae, text_encoder, tokenizer and memviz meta; ``lazy``: the
    unet as a ``LazyUNet`` (its config read and its weights' header checked, built on first use).

    Steps: 1. check the folder and its index; 2. load the required unet and scheduler;
    3. load the optional parts the index names; 4. read ``memviz.json`` (which may name a
    packaged text encoder instead of a text_encoder/ folder).
    """
    if not path.exists():  # 1.
        raise ValueError(f"No model at {path}: the path does not exist; {HINT}.")
    if not path.is_dir():
        raise ValueError(f"{path} is a file, not a model folder; {HINT}.")
    index = _read_json(path / "model_index.json") if (path / "model_index.json").exists() else {}
    for part in ("unet", "scheduler"):
        if not (path / part).is_dir():
            raise ValueError(f"{path} is not a diffusers model: the {part}/ folder is missing; {HINT}.")
    parts: dict[str, Any] = {
        "unet": LazyUNet(path / "unet") if lazy else _load_unet(path / "unet"),  # 2.
        "scheduler": _load_scheduler(path / "scheduler"),
    }
    if (path / "vae").is_dir() or "vae" in index:  # 3.
        parts["vae"] = _load_diffusers_part(path / "vae", "AutoencoderKL")
    meta_file = path / "memviz.json"  # 4.
    parts["meta"] = _read_json(meta_file) if meta_file.exists() else {}
    if (path / "text_encoder").is_dir() or "text_encoder" in index:
        parts["text_encoder"], parts["tokenizer"] = _load_text(path, index)
    elif "text_encoder" in parts["meta"]:  # a packaged encoder, named rather than shipped (memviz.model.text)
        from memviz.model.text import packaged_text_encoder

        parts["text_encoder"], parts["tokenizer"] = packaged_text_encoder(parts["meta"]["text_encoder"])
    return parts


def _scheduler_from_config(cls, config: dict):
    """``cls.from_config(config)`` as diffusers builds it (the same ``config``, so the same fingerprint),
    without its look-up of compatible schedulers, which imports every scheduler and scipy.stats (2 s)."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    defaults = set(config.get("_use_default_values", []))
    init = {k: v for k, v in config.items() if k in params and k not in defaults and not k.startswith("_")}
    kept = {k: v for k, v in config.items() if k not in defaults and k != "_use_default_values"}
    hidden = {k: v for k, v in kept.items() if k not in init} | (
        {"_class_name": cls.__name__} if "_class_name" in config else {}
    )
    try:
        scheduler = cls(**init)
    except Exception as exc:  # noqa: BLE001 - one sentence
        raise ValueError(f"The scheduler config does not build a {cls.__name__}: {_first_line(exc)}.") from None
    scheduler.register_to_config(**hidden)
    return scheduler


def _read_json(file: Path) -> dict:
    from memviz.io.guard import check_file

    try:
        check_file(file)
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{file} is not readable JSON ({exc.__class__.__name__}); restore or re-save the model."
        ) from None


PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def _check_weights(folder: Path, config: bool = True) -> None:
    if config and not (folder / "config.json").exists():
        raise ValueError(f"{folder} has no config.json; re-save it with save_pretrained.")
    if not any(folder.glob("*.safetensors")):
        pickled = [f.name for pattern in PICKLED for f in folder.glob(pattern)]
        raise ValueError(
            f"{folder} has no .safetensors weights"
            + (
                f"; it has pickled weights ({pickled[0]}), which run code when loaded, so memviz does not open them: "
                "convert them where you trust their source (load with use_safetensors=False, then "
                "save_pretrained(folder, safe_serialization=True))"
                if pickled
                else "; the model is incomplete"
            )
            + "."
        )


def _unet_class(folder: Path) -> str:
    name = _read_json(folder / "config.json").get("_class_name", "") if (folder / "config.json").exists() else ""
    if name and name not in UNETS:
        raise ValueError(f"{folder} holds a {name}; memviz supports {' and '.join(UNETS)}.")
    return name or "UNet2DModel"


def _load_unet(folder: Path):
    return _load_diffusers_part(folder, _unet_class(folder))


class LazyUNet:
    """A UNet folder whose config and weights are read but whose module is built on first use
    (``DiffusionModel.unet``). Building one imports diffusers' UNet package, about 3 s on a laptop
    (it imports every diffusers transformer), which a page reading stored artifacts never needs.

    Attributes:
        folder (Path); class_name (str); config (SimpleNamespace): the saved config, by attribute.
    """

    def __init__(self, folder: Path):
        from types import SimpleNamespace

        self.class_name = _unet_class(folder)
        _check_weights(folder)
        self.folder, self.config = folder, SimpleNamespace(**_read_json(folder / "config.json"))
        self._file = (
            next(iter(sorted(folder.glob("*.safetensors")))) if len(list(folder.glob("*.safetensors"))) == 1 else None
        )
        if self._file is not None:  # a broken file is named now, not at the first model call
            from safetensors import safe_open

            try:
                with safe_open(self._file, framework="pt") as f:
                    f.keys()
            except Exception as exc:  # noqa: BLE001 - one sentence
                raise ValueError(f"Could not load {self.class_name} from {folder}: {_first_line(exc)}.") from None

    def load(self):
        """The diffusers module (ValueError in one sentence)."""
        return _load_diffusers_part(self.folder, self.class_name)

    def state_dict(self) -> dict:
        """The weights as the built module's float32 ``state_dict`` holds them, read straight from the file
        (the module is built when the weights span several files)."""
        if self._file is None:
            return self.load().float().state_dict()
        from safetensors.torch import load_file

        return {k: v.float() if v.is_floating_point() else v for k, v in load_file(self._file).items()}


def _load_diffusers_part(folder: Path, class_name: str):
    _check_weights(folder)
    if class_name == "MLPDenoiser":
        from memviz.model.toy import MLPDenoiser as cls
    else:
        cls = getattr(diffusers, class_name)
    try:
        return cls.from_pretrained(
            folder, use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False
        )  # no accelerate needed for small models
    except Exception as exc:  # noqa: BLE001 - any diffusers failure becomes one sentence
        raise ValueError(f"Could not load {class_name} from {folder}: {_first_line(exc)}.") from None


def _load_scheduler(folder: Path):
    config_file = folder / "scheduler_config.json"
    if not config_file.exists():
        raise ValueError(f"{folder} has no scheduler_config.json; re-save the scheduler with save_pretrained.")
    name = _read_json(config_file).get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ValueError(f"{config_file} names an unknown scheduler {name!r}.")
    scheduler = _scheduler_from_config(cls, _read_json(config_file))
    if not hasattr(scheduler, "alphas_cumprod"):
        raise ValueError(f"The {name} in {folder} has no alphas_cumprod (not a variance-preserving scheduler).")
    return scheduler


def _load_text(path: Path, index: dict):
    """The text encoder and tokenizer of a text-to-image pipeline, via transformers."""
    try:
        import transformers
    except ImportError:
        raise ValueError("This model has a text encoder; install transformers to load it.") from None
    loaded = []
    for part, default in (("text_encoder", "CLIPTextModel"), ("tokenizer", "CLIPTokenizer")):
        folder = path / part
        if not folder.is_dir():
            raise ValueError(f"{path} names a {part} but the {part}/ folder is missing.")
        cls = getattr(transformers, (index.get(part) or [None, default])[1] or default, None)
        try:
            if part == "text_encoder":
                _check_weights(folder)
            kwargs = {"use_safetensors": True} if part == "text_encoder" else {}
            loaded.append(cls.from_pretrained(folder, local_files_only=True, **kwargs))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"Could not load the {part} from {folder}: {_first_line(exc)}.") from None
    return loaded[0], loaded[1]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}".rstrip(": ")


def save_model_folder(path: str | Path, unet, scheduler, meta: dict | None = None) -> Path:
    """Write ``unet/``, ``scheduler/``, ``model_index.json`` and ``memviz.json`` to ``path``.

    Each part is written to a temporary folder and swapped in, so a crash never leaves
    a half-written part. The folder also loads with ``diffusers.DDPMPipeline.from_pretrained``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, part in (("unet", unet), ("scheduler", scheduler)):
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=path))
        part.save_pretrained(tmp, **({"safe_serialization": True} if name == "unet" else {}))
        old = path / f".{name}.old"
        if (path / name).exists():
            (path / name).rename(old)
        tmp.rename(path / name)
        shutil.rmtree(old, ignore_errors=True)
    pipeline = "DDPMPipeline" if isinstance(unet, diffusers.UNet2DModel) else "DiffusionPipeline"
    write_json(
        path / "model_index.json",
        {
            "_class_name": pipeline,
            "_diffusers_version": diffusers.__version__,
            "scheduler": ["diffusers", type(scheduler).__name__],
            "unet": ["diffusers", type(unet).__name__],
        },
    )
    meta = dict(meta or {})
    if isinstance(unet, diffusers.UNet2DModel) and unet.config.num_class_embeds is not None:
        meta.setdefault("null_class", unet.config.num_class_embeds - 1)
    write_json(path / "memviz.json", meta)
    return path
