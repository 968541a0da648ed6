"""The Hugging Face libraries, offline: nothing is downloaded at run time (models come from
local folders and pip packages)."""

from __future__ import annotations

import os
import warnings


def configure_offline() -> None:
    """Switch the Hugging Face libraries offline for this process (nothing may be downloaded)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # start-up: transformers loads only when a model does
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars in service logs and CLI output
    # PEFT still calls a transformers helper deprecated for v6; nothing for users to act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
