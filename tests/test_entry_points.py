"""The public Python API against the command line and the web API: one input, one answer, one kind of error."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from mnistlab import (
    CNNClassifier,
    NotAnImageError,
    ParameterError,
    download_dataset,
    export_onnx,
    load_mnist,
    load_split,
    predict_image,
    read_number,
    save_accuracy_vs_time,
    save_confusion_matrix,
    save_digit_grid,
    save_model,
    write_idx,
)
from mnistlab.testing import digit_samples, make_number_photo, running_server
from mnistlab.trust.predict import to_json
from mnistlab.web import create_app

NOT_IMAGES = {"empty": b"", "text": b"hello, this is text\n", "svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>'}


@pytest.fixture(scope="module")
def shipped_server():
    """The shipped reader, served as `mnistlab serve` serves it with no --model."""
    with running_server(create_app()) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("kind", NOT_IMAGES)
def test_a_non_image_is_the_same_error_in_python_as_on_the_web(kind, shipped_server, tmp_path):
    """The web API answered a non-image (or an empty upload) 415, as ``NotAnImageError`` says, but
    ``predict_image`` and ``read_number`` raised a plain ``ImageError`` (http_status 422) for the same bytes, so
    ``except NotAnImageError`` missed it and a service built on ``exc.http_status`` answered 422."""
    data = NOT_IMAGES[kind]
    path = tmp_path / "notes.png"
    path.write_bytes(data)
    web = shipped_server.post("/api/predict", files={"file": ("notes.png", data, "image/png")})
    assert web.status_code == 415, web.text
    for source in (data, path):
        for read in (predict_image, read_number):
            with pytest.raises(NotAnImageError) as raised:
                read(source)
            assert raised.value.http_status == web.status_code


def test_read_number_on_the_web_takes_top_as_python_and_the_cli_do(shipped_server, mnist_small):
    """``read_number(top=5)`` and ``mnistlab predict --number --top 5`` rank five digits for each digit of a row,
    but /api/read-number ignored ``?top=5`` (and ``?top=11``) and always ranked three."""
    _, X_test, _, _ = mnist_small
    photo = make_number_photo(X_test[:2], np.random.default_rng(0), style="canvas-black-on-white")
    web = shipped_server.post("/api/read-number?top=5", files={"file": ("n.png", photo, "image/png")})
    assert web.status_code == 200, web.text
    assert [len(d["top"]) for d in web.json()["digits"]] == [5, 5]
    here = to_json(read_number(photo, top=5), "n.png")
    assert [d["top"] for d in web.json()["digits"]] == [d["top"] for d in here["digits"]]
    too_many = shipped_server.post("/api/read-number?top=11", files={"file": ("n.png", photo, "image/png")})
    assert too_many.status_code == 422, too_many.text


@pytest.mark.parametrize("given", [5, None, b"/tmp/models", ["a"]])
def test_a_path_parameter_given_no_path_is_one_sentence_not_a_type_error(given, tmp_path):
    """``load_mnist(data_dir=5)``, ``load_split(data_dir=b"...")``, ``download_dataset("mnist", dest=5)`` and
    ``save_model(model, None, card={})`` raised Python's TypeError ("expected str, bytes or os.PathLike object"),
    where ``train_recipe(out=5)`` says which parameter takes a path."""
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit(np.zeros((2, 784)), [0, 1])
    calls = {
        "data_dir": lambda: load_mnist(data_dir=given),
        "dest": lambda: download_dataset("mnist", dest=given),
        "model_dir": lambda: save_model(model, given, card={}),
    }
    for param, call in calls.items():
        if given is None and param != "model_dir":  # None is the default of the other two: found, the cache
            continue
        with pytest.raises(ParameterError, match=rf"^{param} must be a path \(a str or a Path\), got "):
            call()
    if given is not None:
        with pytest.raises(ParameterError, match=r"^data_dir must be a path"):
            load_split(data_dir=given)


def test_save_model_into_an_empty_path_is_refused_not_saved_in_the_current_folder(tmp_path, monkeypatch):
    """``save_model(model, "", card={})`` wrote model.json and model.skops into the current folder; ``load_model``,
    ``train_recipe(out="")`` and ``load_mnist(data_dir="")`` refuse an empty path."""
    from sklearn.dummy import DummyClassifier

    monkeypatch.chdir(tmp_path)
    model = DummyClassifier().fit(np.zeros((2, 784)), [0, 1])
    with pytest.raises(ParameterError, match=r"^model_dir is empty, which would mean the current folder"):
        save_model(model, "", card={})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("given", [5, None, b"/tmp/out.png"])
def test_an_output_file_given_no_path_is_one_sentence_not_a_type_error(given):
    """``write_idx``, ``export_onnx`` and the ``save_*`` figures raised Python's TypeError for a path that is None,
    a number or bytes."""
    images, labels = np.zeros((2, 784), np.uint8), np.array([0, 1])
    calls = [
        lambda: write_idx(given, images),
        lambda: save_digit_grid(images, labels, given),
        lambda: save_confusion_matrix(labels, labels, given),
        lambda: save_accuracy_vs_time([{"recipe": "a", "test_accuracy": 0.5, "fit_seconds": 1.0}], given),
        lambda: export_onnx(CNNClassifier(arch="tiny", epochs=1, batch_size=2).fit(images, labels), given),
    ]
    for call in calls:
        with pytest.raises(ParameterError, match=r"^path must be a path \(a str or a Path\), got "):
            call()


def test_a_callback_that_cannot_be_called_is_refused_before_any_work(tmp_path):
    """``train_recipe(progress=5)``, ``evaluate_model``/``export_model(progress=5)`` and ``compare(on_result=5)``
    raised "TypeError: 'int' object is not callable" once their first step began: after the data had loaded,
    and for ``on_result`` after the first model had been fitted."""
    from mnistlab import compare, evaluate_model, export_model, train_recipe

    out = tmp_path / "models"
    calls = {
        "progress": [
            lambda: train_recipe("logreg", limit=100, out=out, progress=5),
            lambda: evaluate_model(out, progress=5),
            lambda: export_model(out, tmp_path / "m.onnx", progress=5),
            lambda: compare("logreg", limit=100, out_dir=tmp_path / "report", progress=5),
        ],
        "on_result": [lambda: compare("logreg", limit=100, out_dir=tmp_path / "report", on_result="print")],
    }
    for param, tries in calls.items():
        for call in tries:
            with pytest.raises(ParameterError, match=rf"^{param} must be a function \(something callable\) or None"):
                call()
    assert not (tmp_path / "report").exists()


def test_compare_given_one_value_of_the_wrong_type_says_so(tmp_path):
    """``compare(5)``, ``compare("logreg", datasets=5)`` and ``compare("logreg", cluster=5)`` raised TypeErrors
    ("'int' object is not iterable", "argument of type 'int' is not iterable")."""
    from mnistlab import DatasetError, RecipeError, compare

    out = tmp_path / "report"
    with pytest.raises(RecipeError, match=r"^Cannot compare a int; give a recipe name"):
        compare(5, limit=100, out_dir=out)
    with pytest.raises(DatasetError, match=r"^Unknown dataset '5'"):
        compare("logreg", datasets=5, limit=100, out_dir=out)
    with pytest.raises(ParameterError, match=r"^cluster must be a Ray cluster's address"):
        compare("logreg", cluster=5, limit=100, out_dir=out)
    assert not out.exists()


def test_every_public_function_and_class_says_what_it_takes_and_returns():
    """``help(mnistlab.get_recipe)``, ``list_recipes`` and ``default_model_dir`` showed no docstring at all, and
    ``help(mnistlab.Recipe)`` only the signature a dataclass is given for want of one."""
    import inspect

    import mnistlab
    import mnistlab.testing
    import mnistlab.web

    for module in (mnistlab, mnistlab.testing, mnistlab.web):
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value) or inspect.isclass(value):
                doc = inspect.getdoc(value)
                assert doc and not doc.startswith(f"{name}("), f"{module.__name__}.{name} has no docstring"


def test_an_array_file_given_to_predict_image_is_pointed_to_predict_array(tmp_path, mnist_small):
    """``mnistlab predict digit.npy`` reads a digit saved with numpy, but ``predict_image("digit.npy")`` (and
    ``read_number``) said "is not an image mnistlab reads (PNG, JPEG, BMP, TIFF, WebP or GIF); send one of those",
    with no word of the function that reads it."""
    _, X_test, _, _ = mnist_small
    np.save(tmp_path / "digit.npy", X_test[0])
    np.savetxt(tmp_path / "digit.csv", X_test[:1], delimiter=",", fmt="%d")
    for name in ("digit.npy", "digit.csv"):
        for read in (predict_image, read_number):
            with pytest.raises(
                NotAnImageError, match=rf"digit.{name[-3:]} holds pixel values, not an image; .*predict_array"
            ):
                read(tmp_path / name)


def test_an_empty_dataset_name_is_refused_not_taken_for_mnist():
    """``load_mnist("")`` (an unset variable: ``load_mnist(os.environ.get("DATASET", ""))``) and
    ``mnistlab data info ""`` loaded MNIST without a word, where ``compare(datasets=[""])`` says the name is empty."""
    from mnistlab import DatasetError
    from mnistlab.testing import run_cli

    for name in ("", " "):
        with pytest.raises(DatasetError, match=r"^Unknown dataset '\s*'; expected one of mnist, fashion-mnist, digits"):
            load_mnist(name)
    done = run_cli(["data", "info", ""], timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("Error: Unknown dataset ''"), done.stderr


@pytest.mark.parametrize("given", [None, 5, ["model.onnx"]])
def test_onnx_predictor_given_no_path_nor_bytes_says_what_it_takes(given):
    """``OnnxPredictor(None)`` said "Not a readable ONNX model (Parameter 'serialized' must be bytes, but got type:
    <class 'NoneType'>); export it again": no export mends a value of the wrong type."""
    from mnistlab import OnnxPredictor

    with pytest.raises(ParameterError, match=r"^source must be the path of an \.onnx file or its bytes, got "):
        OnnxPredictor(given)


class _Pipe(io.RawIOBase):
    """A stream that cannot seek, as a pipe, a socket or an HTTP response is."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_a_photo_read_from_a_stream_that_cannot_seek_is_answered_as_its_bytes_are():
    """``predict_image(sys.stdin.buffer)`` or ``predict_image(urlopen(url))`` gave a doubted photo no second look
    (the stream cannot be read again), so it answered otherwise than the same bytes, the file, ``mnistlab predict -``
    and the web API: the 11th of these photos, a 3 that its second look reads confidently, came back doubted."""
    samples = digit_samples("pen", 20, np.random.default_rng(1), surface="paper-ruled")[8:12]
    for sample in samples:
        whole, piped = predict_image(sample.data), predict_image(io.BufferedReader(_Pipe(sample.data)))
        assert (piped["digit"], piped["confident"], piped["reason"]) == (
            whole["digit"],
            whole["confident"],
            whole["reason"],
        )
    assert to_json(read_number(io.BufferedReader(_Pipe(samples[2].data)))) == to_json(read_number(samples[2].data))


def test_the_cli_table_never_rounds_a_probability_up_to_100_percent():
    """``mnistlab predict``'s table printed 0.9996 as "100.0%", where ``--json`` says 0.9996 and the web page "99.9%"
    (cut down to a tenth of a percent, never rounded up: only a probability of 1 is 100%)."""
    from mnistlab.cli.predict import _result_cells

    answer = {"digit": 7, "probability": 0.9996, "top": [[7, 0.9996], [1, 0.00035]], "confident": True, "reason": None}
    assert _result_cells(answer, number=False)[1:3] == ["99.9%", "7 99.9%, 1 0.0%"]
    row = {"number": "7", "digits": [answer], "confident": True}
    assert _result_cells(row, number=True)[1] == "7:99.9%"
    assert _result_cells({**answer, "probability": 1.0, "top": [[7, 1.0]]}, number=False)[1:3] == ["100.0%", "7 100.0%"]
    assert _result_cells({**answer, "probability": 0.57, "top": [[7, 0.57]]}, number=False)[1] == "57.0%"


def test_a_flag_given_a_string_is_refused_not_taken_as_true(tmp_path):
    """``"no"`` is truthy: ``compare(update_models="no")`` fitted and then wrote into the user's default model
    folders, ``retrain="no"`` fitted again what it could have reused, ``load_mnist(download="no")`` went to the
    mirrors and ``as_frame="no"`` built a DataFrame (``export_model(int8="no")`` is refused so already)."""
    from mnistlab import compare

    for param in ("retrain", "update_models"):
        with pytest.raises(ParameterError, match=rf"^{param} must be True or False, got 'no'\.$"):
            compare("logreg", limit=100, out_dir=tmp_path / "report", **{param: "no"})
    for param in ("as_frame", "download"):
        with pytest.raises(ParameterError, match=rf"^{param} must be True or False, got 'no'\.$"):
            load_mnist(**{param: "no"})
    assert not (tmp_path / "report").exists()
    assert load_mnist(as_frame=np.bool_(False), download=False).data.shape == (70000, 784)


def test_an_empty_path_is_said_to_be_empty_not_taken_for_the_current_folder():
    """``predict_image("")``, ``predict_array("")``, ``predict_image(img, model="")`` and ``load_model("")`` (an
    unset variable) were answered about "." ("./ does not exist or is not a file", ". has no model.json"), where
    ``evaluate_model("")``, ``train_recipe(out="")`` and ``load_mnist(data_dir="")`` say the path is empty."""
    from mnistlab import InputError, load_model, predict_array

    image = np.zeros((28, 28), np.uint8)
    for call in (lambda: predict_image(""), lambda: read_number(""), lambda: predict_array("")):
        with pytest.raises(InputError, match=r"^The path is empty, which would mean the current folder; give the"):
            call()
    with pytest.raises(ParameterError, match=r"^model is empty, which would mean the current folder"):
        predict_image(image, model="")
    with pytest.raises(ParameterError, match=r"^model_dir is empty, which would mean the current folder"):
        load_model("")


def test_load_split_refuses_its_own_arguments_before_loading_anything(tmp_path):
    """``load_split(test_size=0.2)`` (the official split has its own test set) and ``load_split(split="random",
    seed=-1)`` were refused only after the data set was loaded: on a fresh machine, after downloading it."""
    from mnistlab import InputError

    nowhere = tmp_path / "no-data-here"  # loading it would fail: the arguments must be refused first
    with pytest.raises(InputError, match=r"^test_size applies to the random split only"):
        load_split(test_size=0.2, data_dir=nowhere)
    with pytest.raises(ParameterError, match=r"^seed must be a whole number"):
        load_split(split="random", seed=-1, data_dir=nowhere)


@pytest.mark.parametrize("model", [5, b"model-folder", object()])
def test_a_model_argument_of_no_usable_type_is_the_callers_error_not_the_servers(model):
    # A ModelFileError is a model file that could not be loaded (503 in the web API); an int is the caller's mistake.
    with pytest.raises(ParameterError, match="model must be a fitted classifier, a model directory or None") as info:
        predict_image(b"\x89PNG", model=model)
    assert info.value.exit_code == 2 and 400 <= info.value.http_status < 500
