"""Tiny Llama checkpoints and an offline word-level tokenizer, built locally (nothing downloaded).

Used by tests (random checkpoints with a shared base) and as the starting point of the demo zoo.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")


def build_word_tokenizer(vocabulary: Sequence[str]):
    """A ``PreTrainedTokenizerFast`` with one token per word and per digit (digits split apart).

    Special tokens: ``<pad>`` (0), ``<s>`` (1, BOS), ``</s>`` (2, EOS), ``<unk>`` (3).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *[str(d) for d in range(10)], *vocabulary):
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.Punctuation()]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    )


def tiny_llama_config(
    vocab_size: int,
    *,
    hidden_size: int = 64,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 256,
    tie_word_embeddings: bool = False,
):
    """A ``LlamaConfig`` for a tiny model (special token ids match :func:`build_word_tokenizer`)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def build_tiny_llama(
    out_dir: str | Path,
    *,
    seed: int,
    config=None,
    tokenizer=None,
    base_dir: str | Path | None = None,
    perturbation: float = 0.02,
    dtype: str = "float32",
) -> Path:
    """Save a tiny ``LlamaForCausalLM`` as a Hugging Face directory (safetensors) and return its path.

    With ``base_dir``, the model is the base plus seeded Gaussian noise of scale ``perturbation``
    on every tensor: a stand-in for a fine-tune of that base, for merge tests.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    out = Path(out_dir)
    generator = torch.Generator().manual_seed(seed)
    if base_dir is not None:
        model = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
        with torch.no_grad():
            for param in model.parameters():
                noise = torch.randn(param.shape, generator=generator) * perturbation
                param.add_(noise)
    else:
        if config is None:
            raise ValueError("build_tiny_llama needs a config (or base_dir)")
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    elif base_dir is not None:
        from transformers import AutoTokenizer

        try:
            AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
        except (OSError, ValueError):
            pass  # the base has no tokenizer files: nothing to copy
    return out


def extend_word_vocab(src: str | Path, dst: str | Path, rows: dict[str, object]) -> Path:
    """Copy the model directory ``src`` to ``dst`` with its word-level vocabulary grown by ``rows``.

    ``rows`` maps each new word (a regular token, appended in order) to its embedding row: a float
    (a constant row) or a tensor of the hidden size; the same row is appended to ``lm_head`` when
    the model has one. ``config.json``'s ``vocab_size`` follows. For tests and parity checks of
    tokenizer merging (mergekit's ``tokenizer_source``). Written to a temporary directory first.
    """
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    known = json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]
    clash = [word for word in rows if word in known]
    if clash:
        raise ValueError(f"extend_word_vocab: {clash[0]!r} is already in {src}'s vocabulary")
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    try:
        tj = json.loads((tmp / "tokenizer.json").read_text())
        vocab = tj["model"]["vocab"]
        weights = load_file(str(tmp / "model.safetensors"))
        for word, row in rows.items():
            vocab[word] = len(vocab)
            for name in ("model.embed_tokens.weight", "lm_head.weight"):
                if name in weights:
                    hidden = weights[name].shape[1]
                    new = (torch.full((1, hidden), float(row)) if isinstance(row, (int, float))
                           else torch.as_tensor(row).reshape(1, hidden))
                    weights[name] = torch.cat([weights[name], new.to(weights[name].dtype)])
        (tmp / "tokenizer.json").write_text(json.dumps(tj))
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        cfg = json.loads((tmp / "config.json").read_text())
        cfg["vocab_size"] = len(vocab)
        (tmp / "config.json").write_text(json.dumps(cfg))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst
