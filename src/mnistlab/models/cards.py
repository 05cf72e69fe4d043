"""What a model card (``model.json``) may hold, and the checksum that covers all of it.

The card decides how a model is rebuilt and how its answers are judged: the
weights file and its sha256, a CNN's config (classes, shapes, members), the
probability cut for "not sure" answers, the split and seed that give back its
test set. So every field is checked against this schema (types, ranges; a key
the schema does not know is refused), and ``card_sha256`` covers the whole
card: an edited card is refused before its weights are read. A CNN's config is
checked field by field when the net is rebuilt (``models.cnn.config``); here
it only has to be an object.

Cards of format version 1 had no ``card_sha256``, so nothing showed that they
were not edited (a card edited and relabelled version 1 loaded with its edits):
they are refused, with the command that trains the model again.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnistlab.data.seeds import MAX_SEED
from mnistlab.errors import ModelFileError

__all__ = [
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "MAX_CARD_BYTES",
    "WEIGHTS_FILES",
    "MEASURES",
    "card_sha256",
    "recipe_name",
    "parse_card",
    "check_card_to_save",
]

FORMAT_VERSION = 2  # version 2: card_sha256 covers the card
READABLE_VERSIONS = (2,)
MAX_CARD_BYTES = 16 * 2**20  # a card holds a config and a history: kilobytes; a larger file is not ours
WEIGHTS_FILES = {"model.skops": "skops", "model.safetensors": "safetensors"}  # file name -> format


class _Invalid(Exception):
    """One field breaks the schema; the message says which and how."""


def card_sha256(card: dict) -> str:
    """sha256 of the card without its own checksum, as canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in card.items() if k != "card_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _refuse_constant(name: str):
    raise _Invalid(f"it holds {name}, which mnistlab never writes")


MAX_INT_DIGITS = 100  # a card's integers are seeds, counts and sizes: 20 digits at most
# A card nests 4 levels (config, history, a row, its numbers). One nested nearly as deep as json.loads goes
# (Python's recursion limit) was parsed, then overran that limit when card_sha256 wrote it out again: a traceback.
MAX_DEPTH = 32
MAX_SAID_CHARS = 80  # of a field quoted in an error, where the card is not (yet) held to the schema


def _bounded_int(text: str) -> int:
    """An integer of the card; one of thousands of digits is refused here, where ``int`` raised a bare
    ValueError past Python's 4,300-digit limit (a traceback, not a sentence)."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Invalid(f"it holds an integer of {len(text.lstrip('-')):,} digits, which mnistlab never writes")
    return int(text)


def _finite_float(text: str) -> float:
    """A number of the card; one past a float's range (``1e400``) is refused here: read as infinity, it was
    parsed, then stopped ``card_sha256`` writing the card out again (a ValueError traceback)."""
    value = float(text)
    if not math.isfinite(value):
        raise _Invalid(
            f"it holds the number {text[:MAX_SAID_CHARS]}, beyond a float's range, which mnistlab never writes"
        )
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object whose keys are all distinct. JSON parsers keep the last of two (or the first): the checksum
    covers what was parsed, so a card edited by adding a field above its own (another recipe, seed or cut, read
    there by a person) loaded, with the field below."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Invalid(f"it holds the field {key[:MAX_SAID_CHARS]!r} twice, which mnistlab never writes")
        seen.add(key)
    return dict(pairs)


def parse_card(text: bytes, card_path: Path) -> dict:
    """The card in ``text`` (the bytes of ``card_path``), checked against the schema and its checksum.

    Raises ModelFileError in one sentence naming the file, the field and what to do.
    """
    try:
        card = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            object_pairs_hook=_unique,
        )
        if not isinstance(card, dict):
            raise _Invalid("it does not hold a JSON object")
        _check_version(card, card_path)
        _check_schema(card)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(
            f"{card_path} is not valid JSON ({exc}); restore the original file or retrain the model with `mnistlab train`."
        ) from None
    except _Invalid as exc:
        raise ModelFileError(
            f"{card_path} is not a model card mnistlab wrote: {exc}; restore the original file or retrain the model "
            f"with `mnistlab train`."
        ) from None
    if card.get("card_sha256") != card_sha256(card):
        raise ModelFileError(
            f"{card_path} does not match its card_sha256, so it was edited or corrupted; "
            "restore the original file or retrain the model with `mnistlab train`."
        )
    return card


def check_card_to_save(text: bytes, card_path: Path) -> None:
    """Refuse the card ``save_model`` is about to write to ``card_path`` (``text``) where loading would refuse it.

    Said to the caller who passed its fields, before anything is written: ``parse_card``'s sentence told them to
    "restore the original file", one that was never written.
    """
    try:
        _check_schema(json.loads(text, parse_int=_bounded_int))
    except _Invalid as exc:
        raise ModelFileError(
            f"Cannot save the model with this card: {exc}; pass only fields a model card holds "
            "(mnistlab.models.cards), with values it takes."
        ) from None
    parse_card(text, card_path)  # and everything else loading checks


def _check_schema(card: dict) -> None:
    """Each field against its check (an unknown one refused), then the fields that must agree."""
    _check_depth(card)
    for key, value in card.items():
        check = _FIELDS.get(key)
        if check is None:
            raise _Invalid(f"it has the unknown field {key!r}")
        check(key, value)
    _check_consistency(card)


def _check_depth(card: dict) -> None:
    """Refuse a card whose objects and lists nest more than ``MAX_DEPTH`` deep, walked a level at a time (no
    recursion, which such a card would overrun)."""
    level: list = [card]
    for _ in range(MAX_DEPTH):
        children = (v for node in level for v in (node.values() if isinstance(node, dict) else node))
        level = [v for v in children if isinstance(v, (dict, list))]
        if not level:
            return
    raise _Invalid(f"it nests objects and lists more than {MAX_DEPTH} deep, which mnistlab never writes")


def recipe_name(card: dict) -> str:
    """The card's recipe, to name in "retrain it with `mnistlab train RECIPE`": "RECIPE" unless it is a short name
    of letters, digits, '.', '_' and '-', as recipes and spec files' names are. Quoted unchecked, a card of another
    format version made the one error line 2 MB long, or several lines (a newline, a carriage return, a terminal's
    escape codes in its recipe); and a card's recipe of ``x`; rm -rf ~ #`` put that command in the one the user
    was told to run."""
    recipe = card.get("recipe")
    if isinstance(recipe, str) and re.fullmatch(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_SAID_CHARS - 1}}}", recipe):
        return recipe
    return "RECIPE"


def _check_version(card: dict, card_path: Path) -> None:
    version = card.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        said = repr(version) if len(repr(version)) <= MAX_SAID_CHARS else f"{repr(version)[:MAX_SAID_CHARS]}..."
        # A newer mnistlab's model needs this one upgraded, not a retrained model: "retrain it" alone sent the
        # user to train again (an hour for an ensemble) what `pip install --upgrade mnistlab` reads.
        newer = type(version) is int and version > FORMAT_VERSION
        raise ModelFileError(
            f"{card_path.parent} was saved in model format version {said}, but this mnistlab reads only "
            f"version {' and '.join(map(str, READABLE_VERSIONS))}; "
            f"{'upgrade mnistlab (pip install --upgrade mnistlab), or ' if newer else ''}"
            f"retrain it with `mnistlab train {recipe_name(card)}`."
        )


def _check_consistency(card: dict) -> None:
    """The fields that must appear together, and agree."""
    for key in ("weights_file", "weights_sha256", "format"):
        if key not in card:
            raise _Invalid(f"it has no {key!r}")
    if WEIGHTS_FILES[card["weights_file"]] != card["format"]:
        raise _Invalid(f"format {card['format']!r} does not go with weights file {card['weights_file']!r}")
    if (card["format"] == "safetensors") != ("config" in card):
        raise _Invalid("a safetensors model needs a config and a skops model has none")
    if "card_sha256" not in card:
        raise _Invalid("it has no card_sha256")


# --- one check per field: (key, value) -> None, raising _Invalid ------------------


def _is_int(value) -> bool:
    return type(value) is int


def _is_number(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _text(key: str, value) -> None:
    if not isinstance(value, str) or len(value) > 10_000:
        raise _Invalid(f"{key} must be a string")


def _sha256(key: str, value) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise _Invalid(f"{key} must be 64 lower-case hex digits")


def _sha256_or_null(key: str, value) -> None:
    if value is not None:
        _sha256(key, value)


def _one_of(*allowed) -> Callable[[str, Any], None]:
    def check(key: str, value) -> None:
        if value not in allowed or isinstance(value, bool):
            raise _Invalid(f"{key} must be one of {', '.join(map(repr, allowed))}, not {value!r}")

    return check


def _integer(low: int, high: int, *, optional: bool = False) -> Callable[[str, Any], None]:
    def check(key: str, value) -> None:
        if optional and value is None:
            return
        if not _is_int(value) or not low <= value <= high:
            raise _Invalid(f"{key} must be an integer from {low} to {high}, not {value!r}")

    return check


def _object(key: str, value) -> None:
    if not isinstance(value, dict):
        raise _Invalid(f"{key} must be an object")


def _test_size(key: str, value) -> None:
    if value is None or (_is_int(value) and value >= 1) or (type(value) is float and 0 < value < 1):
        return
    raise _Invalid(f"{key} must be null, a fraction between 0 and 1 or a count of at least 1, not {value!r}")


def _versions(key: str, value) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _Invalid(f"{key} must map package names to version strings")


def _metrics(key: str, value) -> None:
    _object(key, value)
    accuracy = value.get("test_accuracy")
    if accuracy is not None and not (_is_number(accuracy) and 0 <= accuracy <= 1):
        raise _Invalid(f"metrics.test_accuracy must be a number from 0 to 1, not {accuracy!r}")
    if "test_predictions_sha256" in value:
        _sha256("metrics.test_predictions_sha256", value["test_predictions_sha256"])


CALIBRATION_FIELDS = ("min_probability", "flag_rate_calibration", "flag_rate_evaluation", "method", "measure")
# What the cut is compared with (``trust.thresholds.sureness``): the classifier's probability alone (what cards
# without a measure meant), or that times how digit-shaped the detector finds the image.
MEASURES = ("probability", "probability_x_digit_shape")


def _calibration(key: str, value) -> None:
    """The probability cut at or below which an answer is "not sure" (``trust.thresholds.ProbabilityCut``).
    Cards written before the cut recorded its ``measure`` hold the other four fields only."""
    if not isinstance(value, dict) or sorted(value) not in (sorted(CALIBRATION_FIELDS), sorted(CALIBRATION_FIELDS[:4])):
        raise _Invalid(f"{key} must hold exactly {', '.join(CALIBRATION_FIELDS)} (measure may be left out)")
    for name in CALIBRATION_FIELDS[:3]:
        if not (_is_number(value[name]) and 0 <= value[name] <= 1):
            raise _Invalid(f"{key}.{name} must be a number from 0 to 1, not {value[name]!r}")
    _text(f"{key}.method", value["method"])
    if value.get("measure", MEASURES[0]) not in MEASURES:
        raise _Invalid(f"{key}.measure must be one of {', '.join(MEASURES)}, not {value['measure']!r}")


_FIELDS: dict[str, Callable[[str, Any], None]] = {
    "format_version": _integer(1, FORMAT_VERSION),
    "card_sha256": _sha256,
    "weights_file": _one_of(*WEIGHTS_FILES),
    "weights_sha256": _sha256,
    "format": _one_of(*WEIGHTS_FILES.values()),
    "config": _object,  # a CNN's: checked field by field when the net is rebuilt
    "recipe": _text,
    "description": _text,
    "family": _text,
    "seed": _integer(0, MAX_SEED),
    "split": _one_of("official", "random"),
    "test_size": _test_size,
    "limit": _integer(1, 2**31, optional=True),
    "dataset": _text,
    "data_dir": _text,  # the folder of a dataset compare was given as a folder
    "data_sha256": _sha256,
    "stretched_from": _integer(1, 2**16 - 1),  # the dataset's brightest pixel value, stretched to 0-255 for the model
    "device": _text,  # where a CNN trained ("cpu", "cuda:0 (GPU model)"); its params' device may say "auto"
    "params": _object,  # what the estimator was built with, for people: the weights hold the model
    "versions": _versions,
    "metrics": _metrics,
    "calibration": _calibration,
    "created": _text,
    # Written by `compare` (lab.fitting): what the user named, the sha256 of the file that
    # defines their code (null for mnistlab's recipes) and of the model.onnx beside a user's torch module.
    "spec": _text,
    "code_sha256": _sha256_or_null,
    "onnx_sha256": _sha256,
}
