"""Shared test fixtures. torch runs on 1 thread: tiny models are 8-40x slower with more here."""

from __future__ import annotations

import os

os.environ.setdefault("FRUGALMERGE_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from frugalmerge.runtime import configure_torch_threads  # noqa: E402

configure_torch_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_WORDS = ["the", "cat", "dog", "plus", "minus", "is", "what", "answer", "=", "+", "-", "."]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny Llama base and three seeded 'fine-tunes' of it (float32, safetensors, tokenizer)."""
    from frugalmerge.zoo.tiny import build_tiny_llama, build_word_tokenizer, tiny_llama_config

    root = tmp_path_factory.mktemp("tiny_models")
    tokenizer = build_word_tokenizer(TINY_WORDS)
    config = tiny_llama_config(len(tokenizer), hidden_size=32, num_layers=4, num_heads=4)
    base = build_tiny_llama(root / "base", seed=0, config=config, tokenizer=tokenizer)
    models = {"base": base}
    for i, name in enumerate(("model_a", "model_b", "model_c"), start=1):
        models[name] = build_tiny_llama(root / name, seed=i, base_dir=base, perturbation=0.05)
    return models
