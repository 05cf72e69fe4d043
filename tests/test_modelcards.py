"""Model cards: the schema every card and CNN config is held to, and the checksum that covers the card.

A real tiny CNN (two members, two epochs on 3,000 digits) is saved as a model
directory; each test edits a copy of its card the way a careless user or an
attacker would, and the Python loader, ``predict --model`` and ``evaluate``
must each refuse it in one sentence, before any net is built.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mnistlab.cli import app
from mnistlab.errors import ModelFileError
from mnistlab.models.cards import card_sha256
from mnistlab.models.files import load_model, read_card, save_model

torch = pytest.importorskip("torch")

runner = CliRunner()


@pytest.fixture(scope="module")
def small_digits(mnist_small):
    X_tr, X_te, y_tr, y_te = mnist_small
    return X_tr, X_te[:200], y_tr, y_te[:200]


@pytest.fixture(scope="module")
def cnn_dir(tmp_path_factory, small_digits):
    """A saved two-member tiny CNN whose card says it was trained on MNIST (so `evaluate` would read MNIST)."""
    from mnistlab.models.cnn.estimator import CNNClassifier

    X_tr, _, y_tr, _ = small_digits
    cnn = CNNClassifier(arch="tiny", epochs=2, batch_size=32, n_members=2, random_state=0, n_threads=1)
    cnn.fit(X_tr, y_tr)
    card = {"recipe": "cnn-fast", "family": "cnn", "dataset": "mnist", "seed": 0, "split": "official"}
    return save_model(cnn, tmp_path_factory.mktemp("cards") / "cnn", card=card)


@pytest.fixture
def model_copy(tmp_path, cnn_dir):
    target = tmp_path / "model"
    shutil.copytree(cnn_dir, target)
    return target


def _card(model_dir) -> dict:
    return json.loads((model_dir / "model.json").read_text())


def _write(model_dir, card: dict, *, resign: bool) -> None:
    """Write ``card``; ``resign`` recomputes card_sha256 as someone who knows the format would."""
    if resign:
        card["card_sha256"] = card_sha256(card)
    (model_dir / "model.json").write_text(json.dumps(card))


def _set(path: str, value):
    """An edit: set config[path] (a dotted path) to value."""

    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _drop(key: str):
    def edit(config: dict) -> None:
        del config[key]

    return edit


def _reverse_classes(config: dict) -> None:
    config["classes"] = config["classes"][::-1]


# The ten edits of the config: each gave a traceback or a wrong answer before cards were checked.
EDITS = {
    "reversed classes": _reverse_classes,
    "unknown parameter": _set("params.colour", "blue"),
    "missing params": _drop("params"),
    "bad classes_dtype": _set("classes_dtype", "|O"),
    "11 classes": _set("classes", list(range(11))),
    "50 members": _set("params.n_members", 50),
    "huge image_shape": _set("image_shape", [100000, 100000]),
    "100000 threads": _set("n_threads", 100000),
    "shifted classes": _set("classes", list(range(1, 11))),
    "3 members": _set("params.n_members", 3),
    "module not a class name": _set("params.module", 5),
}
MESSAGES = {
    "reversed classes": "increasing order",
    "unknown parameter": "unknown parameter 'colour'",
    "missing params": "no 'params'",
    "bad classes_dtype": "classes_dtype '|O'",
    "11 classes": "tensor 'members.0.head.weight' is [10, 512], the config needs [11, 512]",
    "50 members": "n_members got 50",
    "huge image_shape": "image_shape must be an integer from 1 to 1024",
    "100000 threads": "n_threads must be an integer from 1 to 256",
    "shifted classes": None,  # a sorted label set of the right size: only the checksum can tell
    "3 members": "seeds must list one seed per member (3)",
    "module not a class name": "module must be null or the name of a torch module's class, not 5",
}


def _edited(model_dir, name: str, *, resign: bool) -> None:
    card = _card(model_dir)
    EDITS[name](card["config"])
    _write(model_dir, card, resign=resign)


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_a_saved_card_is_covered_and_loads(cnn_dir, small_digits):
    card = read_card(cnn_dir)
    assert card["format_version"] == 2 and card["card_sha256"] == card_sha256(card)
    model, _ = load_model(cnn_dir)
    X_te, y_te = small_digits[1], small_digits[3]
    assert np.mean(model.predict(X_te) == y_te) > 0.8


@pytest.mark.parametrize("name", list(EDITS))
def test_each_config_edit_is_refused_by_the_checksum(model_copy, name):
    _edited(model_copy, name, resign=False)
    with pytest.raises(ModelFileError, match="does not match its card_sha256") as info:
        load_model(model_copy)
    assert "\n" not in str(info.value)
    for args in (["evaluate", str(model_copy)], ["predict", "x.png", "--model", str(model_copy)]):
        assert "card_sha256" in _one_error_line(runner.invoke(app, args))


@pytest.mark.parametrize("name", [n for n, m in MESSAGES.items() if m is not None])
def test_each_absurd_config_is_refused_by_the_schema_even_when_resigned(model_copy, name):
    """Someone who recomputes card_sha256 (or an old card without one) still meets the schema."""
    _edited(model_copy, name, resign=True)
    with pytest.raises(ModelFileError) as info:
        load_model(model_copy)
    message = str(info.value)
    assert MESSAGES[name] in message and "\n" not in message and "retrain" in message
    for args in (["evaluate", str(model_copy)], ["predict", "x.png", "--model", str(model_copy)]):
        assert MESSAGES[name] in _one_error_line(runner.invoke(app, args))


def test_reversed_classes_never_answer(model_copy, small_digits, tmp_path):
    """Reversed classes made a 7 come back as 2, "confident": the model is refused instead."""
    X_te, y_te = small_digits[1], small_digits[3]
    seven = X_te[np.flatnonzero(y_te == 7)[0]]
    np.save(tmp_path / "seven.npy", seven)
    model, _ = load_model(model_copy)
    assert model.predict(seven[None])[0] == 7
    _edited(model_copy, "reversed classes", resign=True)
    result = runner.invoke(app, ["predict", str(tmp_path / "seven.npy"), "--model", str(model_copy), "--json"])
    assert "increasing order" in _one_error_line(result) and '"digit"' not in result.output


def test_version_1_cards_are_refused_edited_or_not(model_copy):
    """A version 1 card had no card_sha256: an edited card relabelled version 1 would load with its edits."""
    card = _card(model_copy)
    del card["card_sha256"]
    card["format_version"] = 1
    _write(model_copy, card, resign=False)
    with pytest.raises(ModelFileError, match="format version 1, but this mnistlab reads only version 2; retrain"):
        load_model(model_copy)
    card["config"]["params"]["inputs"] = "deskewed"  # an edit such a card could carry: what the net is shown
    _write(model_copy, card, resign=False)
    line = _one_error_line(runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)]))
    assert "format version 1" in line and "mnistlab train" in line


def test_a_card_of_a_newer_format_says_to_upgrade_mnistlab(model_copy):
    """A newer mnistlab's model was refused with "retrain it" alone: upgrading reads it, retraining rebuilds it."""
    _write(model_copy, {**_card(model_copy), "format_version": 3}, resign=True)
    line = _one_error_line(runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)]))
    assert "format version 3" in line and "upgrade mnistlab" in line and "`mnistlab train cnn-fast`" in line
    _write(model_copy, {**_card(model_copy), "format_version": 1}, resign=True)
    assert "upgrade" not in _one_error_line(runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)]))


@pytest.mark.parametrize(
    "version, recipe",
    [(3, "cnn-fast`.\n\x1b[32mmodel ok\x1b[0m\rx"), (3, "r" * 2_000_000), ([2] * 100_000, "cnn-fast")],
    ids=["control characters", "2 MB recipe", "long version"],
)
def test_a_card_of_another_version_is_refused_in_one_short_line(model_copy, version, recipe):
    """The card of an unreadable version is not held to the schema: its recipe and version were quoted as they
    were, a newline and a carriage return in one made the error several lines, a long one a 2 MB line."""
    _write(model_copy, {**_card(model_copy), "format_version": version, "recipe": recipe}, resign=False)
    line = _one_error_line(runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)]))
    assert len(line) < 400 and line.isprintable() and "model format version" in line
    assert line.endswith(("`mnistlab train RECIPE`.", "`mnistlab train cnn-fast`.")), line


@pytest.mark.parametrize("version", [2, 3])
def test_a_card_recipe_that_is_no_name_is_not_put_in_the_command_to_run(model_copy, version):
    """The sentence's command to retrain the model quoted the card's recipe as it was: a recipe of
    ``x`; rm -rf ~ #`` (a string the schema takes, the card signed again) told the user to run that."""
    recipe = "cnn-fast`; rm -rf ~ #"
    _write(model_copy, {**_card(model_copy), "format_version": version, "recipe": recipe}, resign=True)
    (model_copy / "model.safetensors").unlink()  # version 2: the weights' sentence says how to retrain
    line = _one_error_line(runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)]))
    assert "rm -rf" not in line and line.endswith("`mnistlab train RECIPE`."), line
    _write(model_copy, {**_card(model_copy), "recipe": "knn-tuned_2.1"}, resign=True)  # a spec file's name
    line = _one_error_line(runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)]))
    assert line.endswith("`mnistlab train knn-tuned_2.1`."), line


@pytest.mark.parametrize("field", ["recipe", "seed", "classes"])
def test_a_card_holding_a_field_twice_is_refused(model_copy, field):
    """The checksum covers the card as parsed, where the last of two fields wins: a field added above its own
    (another recipe, seed or classes, there for a person to read) was an edit that loaded, with the one below."""
    text = (model_copy / "model.json").read_text()
    added = {
        "recipe": '"recipe": "knn-deskew"',
        "seed": '"seed": 7',
        "classes": '"classes": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]',
    }
    where = '"config": {' if field == "classes" else "{"
    (model_copy / "model.json").write_text(text.replace(where, f"{where}\n{added[field]},", 1))
    with pytest.raises(ModelFileError, match=f"holds the field '{field}' twice"):
        read_card(model_copy)
    line = _one_error_line(runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)]))
    assert f"'{field}' twice" in line


@pytest.mark.parametrize(
    "change, message",
    [
        ({"unknown_field": 1}, "unknown field 'unknown_field'"),
        ({"seed": -1}, "seed must be an integer from 0 to"),
        ({"split": "sideways"}, "split must be one of"),
        ({"test_size": 0}, "test_size must be"),
        ({"calibration": {"min_probability": 2}}, "calibration must hold exactly"),
        (
            {
                "calibration": {"min_probability": 0.5, "flag_rate_calibration": 0, "flag_rate_evaluation": 0}
                | {"method": "m", "measure": "vibes"}
            },
            "calibration.measure must be one of",
        ),
        ({"weights_sha256": "0" * 63}, "weights_sha256 must be 64"),
        ({"format": "skops"}, "does not go with weights file"),
        ({"card_sha256": None}, "card_sha256 must be 64"),
        ({"code_sha256": "abc"}, "code_sha256 must be 64"),
        ({"onnx_sha256": None}, "onnx_sha256 must be 64"),
        ({"spec": 3}, "spec must be a string"),
    ],
)
def test_card_fields_are_held_to_the_schema(model_copy, change, message):
    card = {**_card(model_copy), **change}
    _write(model_copy, card, resign="card_sha256" not in change)
    with pytest.raises(ModelFileError, match=message):
        read_card(model_copy)


def test_the_fields_compare_writes_are_in_the_schema(model_copy):
    """``compare`` records what the user named, the sha256 of their code and of a user module's model.onnx."""
    for code in (None, "a" * 64):
        card = {**_card(model_copy), "spec": "mine.py:build", "code_sha256": code, "onnx_sha256": "b" * 64}
        _write(model_copy, card, resign=True)
        assert read_card(model_copy)["code_sha256"] == code


def test_a_user_torch_module_is_saved_and_refused_in_one_sentence(small_digits, tmp_path):
    """Its config names the module's class (the code is not in the folder): valid, and never rebuilt."""
    from torch import nn

    from mnistlab.models.cnn.estimator import CNNClassifier

    X_tr, _, y_tr, _ = small_digits
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    cnn = CNNClassifier(module=net, epochs=1, batch_size=64, n_members=1, random_state=0).fit(X_tr[:500], y_tr[:500])
    folder = save_model(cnn, tmp_path / "mine", card={"recipe": "mine.py:net", "spec": "mine.py:net"})
    card = read_card(folder)
    assert card["config"]["params"]["module"] == "torch.nn.modules.container.Sequential"
    with pytest.raises(ModelFileError, match="your own torch module torch.nn.modules.container.Sequential") as info:
        load_model(folder)
    assert "\n" not in str(info.value) and "model.onnx" in str(info.value)
    line = _one_error_line(runner.invoke(app, ["evaluate", str(folder)]))
    assert "your own torch module" in line


def test_a_user_modules_onnx_must_match_the_sha256_in_its_card(small_digits, tmp_path):
    """Its model.onnx is how the model loads (OnnxPredictor), and its card records onnx_sha256: replaced alone by
    another valid graph, it loaded, and answered otherwise."""
    from torch import nn

    from mnistlab.lab.fitting import _save
    from mnistlab.models.cnn.estimator import CNNClassifier
    from mnistlab.models.cnn.onnx import OnnxPredictor, onnx_graph

    X_tr, X_te, y_tr, _ = small_digits
    nets = [
        CNNClassifier(module=nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), epochs=1, n_members=1, random_state=seed)
        for seed in (0, 1)
    ]
    for net in nets:
        net.fit(X_tr[:500], y_tr[:500])
    folder, why = _save(
        nets[0], tmp_path / "mine", {"recipe": "mine.py:net", "spec": "mine.py:net"}, lambda _: None, "mine"
    )
    assert folder is not None, why
    np.testing.assert_array_equal(OnnxPredictor(folder / "model.onnx").predict(X_te), nets[0].predict(X_te))
    (folder / "model.onnx").write_bytes(onnx_graph(nets[1]))
    with pytest.raises(ModelFileError) as refused:
        OnnxPredictor(folder / "model.onnx")
    assert str(refused.value) == (
        f"{folder / 'model.onnx'} does not match the onnx_sha256 recorded in {folder / 'model.json'}, so it was "
        "changed or corrupted; restore the original file or train the model again."
    )


def test_configs_saved_before_the_module_parameter_still_load(model_copy, small_digits):
    """Cards from before ``CNNClassifier(module=...)`` existed: mnistlab's own net, as saved."""
    card = _card(model_copy)
    del card["config"]["params"]["module"]
    _write(model_copy, card, resign=True)
    model, _ = load_model(model_copy)
    assert model.module is None and np.mean(model.predict(small_digits[1]) == small_digits[3]) > 0.8


def test_a_renamed_module_in_a_resigned_config_is_still_refused(model_copy):
    """Naming a module in mnistlab's own CNN does not make it load some other code: it is refused."""
    card = _card(model_copy)
    card["config"]["params"]["module"] = "os.system"
    _write(model_copy, card, resign=True)
    with pytest.raises(ModelFileError, match="your own torch module os.system"):
        load_model(model_copy)
    assert "your own torch module" in _one_error_line(
        runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)])
    )


@pytest.mark.parametrize("dtype", ["float64", "float16", "int8", "bool"])
def test_weights_of_another_dtype_are_refused_even_when_resigned(model_copy, dtype):
    """They were cast as torch copied them into the net, which then held other numbers than the file: a float64
    file rounded, a bool one 0s and 1s, and the model loaded."""
    from safetensors.numpy import load, save

    weights = model_copy / "model.safetensors"
    data = save({name: array.astype(dtype) for name, array in load(weights.read_bytes()).items()})
    weights.write_bytes(data)
    card = _card(model_copy)
    card["weights_sha256"] = hashlib.sha256(data).hexdigest()
    _write(model_copy, card, resign=True)  # the folder's owner may swap the weights: the card then names them
    with pytest.raises(ModelFileError) as refused:
        load_model(model_copy)
    assert f"{weights} holds {dtype} weights (in tensor 'members.0." in str(refused.value)
    assert str(refused.value).endswith("which mnistlab never saves; restore the original files or retrain the model.")


def test_nan_and_giant_cards_are_refused(model_copy):
    text = (model_copy / "model.json").read_text().replace('"seed": 0', '"seed": NaN')
    (model_copy / "model.json").write_text(text)
    with pytest.raises(ModelFileError, match="NaN, which mnistlab never writes"):
        read_card(model_copy)
    (model_copy / "model.json").write_text(" " * (16 * 2**20 + 1))
    with pytest.raises(ModelFileError, match="larger than any card"):
        read_card(model_copy)


@pytest.mark.parametrize("field", ['"train_seconds"', '"lr"', '"loss"'])
def test_a_number_beyond_a_floats_range_is_one_sentence(model_copy, field):
    """``1e400`` parsed as infinity, then card_sha256 could not write it out: `predict --model` printed a
    ValueError traceback (exit 1), edited card or not."""
    text = (model_copy / "model.json").read_text()
    (model_copy / "model.json").write_text(re.sub(f"{field}: [-0-9.e]+", f"{field}: 1e400", text, count=1))
    with pytest.raises(ModelFileError, match="the number 1e400, beyond a float's range"):
        read_card(model_copy)
    assert "1e400" in _one_error_line(runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)]))


def test_a_card_nested_at_any_depth_is_one_sentence(model_copy):
    """A card nested just within json.loads' reach was parsed, then overran the recursion limit when its
    checksum wrote it out again: `predict --model` printed a RecursionError traceback (972 deep, from the CLI)."""
    card = _card(model_copy)
    del card["card_sha256"]
    head = json.dumps(card)[:-1]
    limit = sys.getrecursionlimit()
    for depth in range(limit - 100, limit + 20):  # the depth that parses but cannot be hashed lies in here
        nested = "[" * depth + "]" * depth
        (model_copy / "model.json").write_text(f'{head}, "params": {{"x": {nested}}}, "card_sha256": "{"0" * 64}"}}')
        with pytest.raises(ModelFileError):
            read_card(model_copy)
    (model_copy / "model.json").write_text(f'{head}, "params": {{"x": {"[" * 40 + "]" * 40}}}}}')
    assert "nests objects and lists more than 32 deep, which mnistlab never writes" in _one_error_line(
        runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)])
    )


@pytest.mark.parametrize("where", ['"seed": 0', '"n_threads": 1'])  # the card's own field, its CNN config's
def test_an_integer_of_thousands_of_digits_is_one_sentence(model_copy, where):
    """Past Python's 4,300 digits, int() raised a bare ValueError: `predict --model` printed a traceback."""
    card = model_copy / "model.json"
    card.write_text(card.read_text().replace(where, where.split()[0] + " " + "9" * 5000))
    assert _one_error_line(runner.invoke(app, ["predict", "x.png", "--model", str(model_copy)])) == (
        f"Error: {card} is not a model card mnistlab wrote: it holds an integer of 5,000 digits, which mnistlab "
        "never writes; restore the original file or retrain the model with `mnistlab train`."
    )


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_configs_give_a_model_or_one_sentence(cnn_dir, data):
    """Any value in any place of a (re-signed) config: a working model or a ModelFileError, nothing else."""
    card = _card(cnn_dir)
    config = copy.deepcopy(card["config"])
    node = config
    while True:
        key = data.draw(st.sampled_from(sorted(node)), label="key")
        if not isinstance(node[key], dict) or data.draw(st.booleans(), label="stop"):
            break
        node = node[key]
    node[key] = data.draw(_JSON, label="value")
    from mnistlab.models.files import cnn_from_bytes

    weights = (cnn_dir / "model.safetensors").read_bytes()
    try:
        model = cnn_from_bytes(weights, config, source="weights")
    except ModelFileError as exc:
        assert "\n" not in str(exc)
    else:
        assert model.predict_proba(np.zeros((1, 784), np.uint8)).shape == (1, 10)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["seed", "split", "test_size", "limit", "metrics", "calibration", "format", "recipe", "x"]),
    value=_JSON,
)
def test_random_card_fields_give_a_card_or_one_sentence(cnn_dir, tmp_path_factory, key, value):
    """Any value in a (re-signed) card field: the card, or a ModelFileError in one sentence."""
    folder = tmp_path_factory.mktemp("random-card")
    card = {**_card(cnn_dir), key: value}
    _write(folder, card, resign=True)
    try:
        assert read_card(folder)[key] == value
    except ModelFileError as exc:
        assert "\n" not in str(exc)
