"""The embedded local model: SmolLM2-135M-Instruct, converted once and served by vLLM's CPU build.

Typical use (free_port from swarmkeep.services.process):
    model_path = prepare_local_model(Path("~/.cache/swarmkeep/models").expanduser(), progress=print)
    with LocalModelServer(model_path, port=free_port(), log_file=Path("vllm.log")) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
"""

from swarmkeep.inference.model_prep import (
    GGUF_INSTALL_HINT,
    MODEL_NAME,
    LocalModelError,
    find_gguf,
    is_prepared,
    prepare_local_model,
)
from swarmkeep.inference.model_server import (
    LocalModelServer,
    find_libiomp5,
    port_is_free,
)

__all__ = [
    "GGUF_INSTALL_HINT",
    "MODEL_NAME",
    "LocalModelError",
    "LocalModelServer",
    "find_gguf",
    "find_libiomp5",
    "is_prepared",
    "port_is_free",
    "prepare_local_model",
]
