"""Estimator cards: a directory with ``card.json`` (what, which items, IRT settings, validation
error, training-data hash, fitted scalars) and ``params.safetensors`` (fitted arrays). No pickle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from frugalmerge._atomic import atomic_dir
from frugalmerge.estimators.core import Estimator
from frugalmerge.estimators.errors import CardError
from frugalmerge.estimators.responses import ResponseMatrix

CARD_FORMAT = 1
ARRAYS_FILE = "params.safetensors"
#: Optional: the card's training responses beside card.json (``frugalmerge zoo cards`` ships them),
#: so the card can be refitted and a search can recalibrate at a larger k for free.
RESPONSES_FILE = "responses.npz"

__all__ = ["save_card", "load_card", "load_card_responses", "CARD_FORMAT", "RESPONSES_FILE"]


def save_card(estimator: Estimator, responses: ResponseMatrix, out_dir: str | Path,
              validation: dict[str, Any] | None = None, *, scoring: dict[str, Any] | None = None) -> Path:
    """Write ``estimator`` (fitted on ``responses``) as a card directory, atomically.

    ``scoring``: task settings the responses were scored with when they are not the task's own
    0/1 scores (e.g. ``{"graded": true, "graded_measure": "token_probability"}``); a user of the
    card must score its items the same way."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    meta, arrays = estimator.get_state()
    card = {
        "format": CARD_FORMAT,
        "estimator": meta["estimator"],
        "params": meta["params"],
        "k": int(getattr(estimator, "k_", len(estimator.selected_items_))),
        "selected_item_ids": estimator.selected_items_,
        "irt_settings": meta["fitted"].get("irt_settings_"),
        "validation": validation,
        "training_data": {"name": responses.name, "sha256": responses.sha256(), "n_models": responses.n_models,
                          "n_items": responses.n_items, "has_target": responses.target is not None},
        "fitted": meta["fitted"],
        "arrays_file": ARRAYS_FILE,
    }
    if scoring:
        card["scoring"] = dict(scoring)
    with atomic_dir(out, marker="card.json") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / ARRAYS_FILE))
        # The fitted arrays' hash: an edited, truncated or swapped-in parameter file is refused
        # at load instead of giving other predictions silently.
        card["arrays_sha256"] = _sha256(tmp / ARRAYS_FILE)
        (tmp / "card.json").write_text(json.dumps(card, indent=2))
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_card(card_dir: str | Path) -> tuple[Estimator, dict[str, Any]]:
    """Read a card directory; returns the fitted estimator and the card's JSON."""
    from safetensors.numpy import load_file

    d = Path(card_dir)
    path = d / "card.json"
    if not path.is_file():
        raise CardError(f"{d}: not an estimator card (no card.json)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CardError(f"{path}: invalid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(card, dict):
        raise CardError(f"{path}: expected a JSON object, got {type(card).__name__}")
    if card.get("format") != CARD_FORMAT:
        raise CardError(f"{path}: unsupported card format {card.get('format')!r} (expected {CARD_FORMAT})")
    for key, kind in (("estimator", str), ("selected_item_ids", list), ("params", dict), ("fitted", dict)):
        if not isinstance(card.get(key), kind):
            raise CardError(f"{path}: {key!r} is missing or not a {kind.__name__}")
    arrays_path = d / str(card.get("arrays_file", ARRAYS_FILE))
    if not arrays_path.is_file():
        raise CardError(f"{d}: missing {arrays_path.name}")
    expected = card.get("arrays_sha256")  # absent from cards written before it was recorded
    if expected is not None and _sha256(arrays_path) != expected:
        raise CardError(f"{arrays_path}: hash differs from the card's arrays_sha256 "
                        "(the fitted parameters were changed or replaced after the card was written)")
    try:
        arrays = load_file(str(arrays_path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CardError(f"{arrays_path}: unreadable ({e})") from None
    est = Estimator.from_state({"estimator": card["estimator"], "params": card.get("params", {}),
                                "fitted": card.get("fitted", {})}, arrays)
    if est.selected_items_ != list(card["selected_item_ids"]):
        raise CardError(f"{path}: selected_item_ids disagree with the fitted state")
    return est, card


def load_card_responses(card_dir: str | Path, card: dict[str, Any]) -> ResponseMatrix | None:
    """The training responses shipped beside a card (:data:`RESPONSES_FILE`), None when absent.

    Raises :class:`CardError` when they do not hash to the card's training data: a card refitted
    or recalibrated on other data would silently be another card."""
    from frugalmerge.estimators.responses import load_responses

    path = Path(card_dir) / RESPONSES_FILE
    if not path.is_file():
        return None
    data = load_responses(path)
    digest, expected = data.sha256(), card["training_data"]["sha256"]
    if digest != expected:
        raise CardError(f"{path}: responses hash {digest[:12]} differs from the card's training data "
                        f"{expected[:12]} (not the data this card was fitted on)")
    return data
