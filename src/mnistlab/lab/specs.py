"""What ``compare`` compares: recipe names, your own code, or Python objects, checked before anything trains.

A spec is a recipe name (``mnistlab recipes``) or one of

- ``package.module:callable`` or ``path/to/file.py:callable``: the callable returns an unfitted scikit-learn
  classifier (anything with ``fit``, ``predict`` and ``get_params``) or a ``torch.nn.Module``, which mnistlab trains
  with its own loop (``CNNClassifier(module=...)``). It may take ``seed`` and ``n_jobs`` keywords (without ``seed``,
  every ``random_state`` of what it returns is set to the seed, as for an unfitted classifier);
- ``path/to/best.json``: the best configuration a ``mnistlab sweep`` saved (a recipe with some parameters set);
- in Python, such a callable itself, or an unfitted classifier (cloned per seed, every ``random_state`` the seed).

``resolve_specs`` calls each one once (seed 0): a typo, a missing file or a callable that returns no classifier is one
sentence before any minutes are spent. A contender is a ``Recipe`` (``build(seed, n_jobs)``: a fresh estimator) plus
the sha256 of its code, which decides, with the parameters, whether a recorded run can be reused.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.data.home import home_file
from mnistlab.errors import RecipeError
from mnistlab.lab.codehash import source_sha256
from mnistlab.models.files import is_cnn
from mnistlab.models.recipes import RECIPES, Recipe, get_recipe

__all__ = [
    "Contender",
    "recorded_name",
    "resolve_specs",
    "resolve_spec",
    "resolve_recipe_or_spec_file",
    "check_for_data",
    "check_steps",
]

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a spec's model name, also a folder name


@dataclass(frozen=True)
class Contender:
    """One model of a comparison: how to build it and what code it came from."""

    recipe: Recipe  # name, description, build(seed, n_jobs), family ("classic"/"cnn"), default CV folds
    code_sha256: str | None  # of the file that defines the user's code (None for mnistlab's recipes)
    spec: str  # as the user wrote it
    in_process: bool = False  # its classes live in a file worker processes cannot import: CV runs single-process
    tuned: dict | None = None  # a spec file's {"recipe": base recipe name, "params": what it sets on it}
    tuned_on: dict | None = None  # a spec file's record of the data a sweep chose it on ("dataset", "data_sha256"...)

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def users_code(self) -> bool:
        """Whether the model is the user's own code: not a recipe, nor a recipe a spec file tuned."""
        return self.tuned is None and self.spec not in RECIPES


def resolve_specs(specs) -> list[Contender]:
    """Check every spec and turn it into a ``Contender``; names must be unique."""
    seen: dict[str, Contender] = {}
    for c in (contenders := [resolve_spec(s) for s in specs]):  # every spec checked, then their names
        if c.name in seen:
            raise RecipeError(f"Two models are named {c.name!r} ({seen[c.name].spec} and {c.spec}); {_apart(c)}.")
        seen[c.name] = c
    return contenders


def _apart(contender: Contender) -> str:
    """How to give two models of one name their own names (objects from Python: named by class or __name__)."""
    if contender.tuned is not None:
        return 'give each spec file its own "name" (letters, digits, ".", "_", "-")'
    if ".py:" in contender.spec:
        return "rename one of the files, or give each callable its own name"
    python = ":" not in contender.spec and contender.spec not in RECIPES
    return "wrap each in a def of its own name" if python else "name each one once"


def resolve_recipe_or_spec_file(name) -> Contender:
    """What ``train`` takes, checked as ``compare`` checks it: a recipe name or a sweep's spec file (str or Path)."""
    name = _path_text(name)
    if not isinstance(name, str):
        raise RecipeError(
            f"Cannot train {name!r} (of type {type(name).__name__}); give a recipe name or the path of a spec file "
            "`mnistlab sweep` wrote."
        )
    if name.endswith(".json") and name not in RECIPES:
        return _from_spec_file(name)
    return Contender(get_recipe(name), None, name)


def recorded_name(spec: str) -> str:
    """The name a model given as ``spec`` is recorded under, found without running its code: a spec file's
    ``"name"``, ``file.py:build`` for ``path/file.py:build``; a recipe or ``module:callable`` as it is."""
    if spec.endswith(".json") and spec not in RECIPES:
        return _read_spec_file(spec)[3]
    target, colon, attr = spec.rpartition(":")
    return Path(target).name + ":" + attr if colon and target.endswith(".py") and spec not in RECIPES else spec


def resolve_spec(spec) -> Contender:
    """One spec (see the module docstring) as a checked ``Contender``."""
    spec = _path_text(spec)
    if isinstance(spec, str):
        if spec.endswith(".json") and spec not in RECIPES:
            return _from_spec_file(spec)
        if spec in RECIPES or ":" not in spec:
            return Contender(get_recipe(spec), None, spec)  # an unknown bare name: the registry's sentence
        target, _, attr = spec.rpartition(":")
        if target.endswith(".py"):
            module, code = _load_file(target, spec)
            return _from_object(_attribute(module, attr, spec), recorded_name(spec), spec, code, True)
        module = _import(target, spec)
        return _from_object(_attribute(module, attr, spec), spec, spec, source_sha256(module), False)
    if callable(spec) and (isinstance(spec, type) or not hasattr(spec, "fit")):
        name = getattr(spec, "__name__", type(spec).__name__)
        return _from_object(spec, name, name, source_sha256(inspect.getmodule(spec)), False)
    if hasattr(spec, "fit") and hasattr(spec, "predict"):
        _check_parameters(spec, type(spec).__name__)
        return _from_estimator(spec)
    raise RecipeError(
        f"Cannot compare a {type(spec).__name__}; give a recipe name, 'module:callable', 'file.py:callable', "
        "a callable or an unfitted classifier."
    )


def _path_text(spec):
    """A spec file given as a Path (``Path("best.json")``) as the text of its path; anything else as it is."""
    return os.fspath(spec) if isinstance(spec, os.PathLike) else spec


def _from_spec_file(path: str) -> Contender:
    """A recipe with some parameters set, from the JSON file ``mnistlab sweep`` wrote (its best configuration)."""
    data, base_name, params, name, tuned_on = _read_spec_file(path)
    if not _MODEL_NAME.fullmatch(name):  # it names model folders: no path separators, no dot-folders
        raise RecipeError(
            f"The spec file {path} names its model {name[:80]!r}; use letters, digits, '.', '_' and '-' "
            '(at most 100, starting with a letter or digit) in its "name".'
        )
    base = get_recipe(base_name)

    def build(seed: int, n_jobs: int):
        return base.build(seed, n_jobs).set_params(**params)

    known = base.build(0, 1).get_params(deep=True)
    unknown = sorted(set(params) - set(known))
    if unknown:  # one sentence now, not after the other fits
        raise RecipeError(
            f"The spec file {path} sets a parameter {base_name} does not take ({', '.join(map(repr, unknown))}); "
            f"its parameters include {', '.join(sorted(k for k in known if '__' in k or base.family == 'cnn')[:8])}."
        )
    check_steps(f"The spec file {path}", base_name, params, known)
    try:
        built = build(0, 1)
    except ValueError as exc:
        raise RecipeError(f"The spec file {path} sets a parameter {base_name} does not take ({exc}).") from None
    try:
        check_values(built)
    except (ValueError, TypeError) as exc:
        raise RecipeError(f"The spec file {path} sets a value {base_name} cannot take ({exc}).") from None
    recipe = Recipe(name, f"{base.description} Tuned: {json.dumps(params)}.", build, base.family, base.cv)
    tuned = {"recipe": base_name, "params": params}
    return Contender(recipe, hashlib.sha256(data).hexdigest(), path, tuned=tuned, tuned_on=tuned_on)


def _read_spec_file(path: str) -> tuple[bytes, str, dict, str, dict]:
    """A spec file's bytes, base recipe name, parameters, model name and what it records of the data it was chosen
    on; a model card is refused as one."""
    try:
        data = home_file(path, OSError).read_bytes()  # "~/best.json" in the home folder, as the CLI takes it
        saved = json.loads(data)
        is_card = isinstance(saved, dict) and bool({"weights_sha256", "format_version"} & saved.keys())
        if not is_card:
            base_name, params = str(saved["recipe"]), dict(saved["params"])
            name = str(saved.get("name") or f"{base_name}-tuned")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecipeError(
            f"Cannot read the spec file {path} ({type(exc).__name__}); give a JSON file written by `mnistlab sweep`."
        ) from None
    if is_card:  # it has "recipe" and "params" too, but its params name the steps as strings
        raise RecipeError(
            f"{path} is a model card (the model.json `mnistlab train` saves beside a model), not a spec; "
            "give a spec file `mnistlab sweep` wrote, or a recipe name."
        )
    return data, base_name, params, name, {k: saved.get(k) for k in ("dataset", "data_sha256", "data_dir")}


def _holds_estimator(value) -> bool:
    """Whether ``value`` is an estimator (a pipeline's step) or a list of them (its ``steps``)."""
    if isinstance(value, (list, tuple)):
        return any(_holds_estimator(v) for v in value)
    return callable(getattr(value, "get_params", None))


def check_steps(where: str, base_name: str, params: dict, known: dict) -> None:
    """Refuse a value that replaces a step of the recipe, or its steps: JSON and the command line hold no
    estimator (a step may only be skipped, as "passthrough"). ``where`` begins the sentence ("--param")."""
    steps = known.get("steps")
    last = steps[-1][0] if isinstance(steps, list) and steps and isinstance(steps[-1], tuple) else None
    for key, value in params.items():
        if value == "passthrough" and key == last:
            raise RecipeError(
                f"{where} skips the last step of {base_name} ({key!r}), so that nothing would predict; "
                "skip another step, or set this step's parameters instead."
            )
        if not _holds_estimator(known[key]) or (value == "passthrough" and not isinstance(known[key], list)):
            continue
        steps = isinstance(known[key], list)
        inner = sorted(k for k in known if k.startswith(f"{key}__")) or sorted(k for k in known if "__" in k)
        such_as = f", such as {inner[0]}" if inner else ""
        raise RecipeError(
            f"{where} sets {'the steps' if steps else 'a step'} of {base_name} ({key!r}) to "
            f"{json.dumps(value)[:60]}, which is not {'a list of estimators' if steps else 'an estimator'}; "
            f"set the steps' parameters instead{such_as}."
        )


def check_values(estimator) -> None:
    """Check the values of ``estimator``'s parameters and its steps' now: scikit-learn checks them in ``fit``."""
    for part in [estimator, *estimator.get_params(deep=True).values()]:
        if is_cnn(part):
            from mnistlab.models.cnn.checks import check_params

            check_params(part.get_params())
        elif hasattr(part, "_parameter_constraints") and callable(getattr(part, "_validate_params", None)):
            part._validate_params()  # scikit-learn's own check, as fit makes it


def _load_file(path: str, spec: str):
    """Execute the user's file as a module of its own (kept in sys.modules so its classes pickle in-process)."""
    file = home_file(path, RecipeError)  # "~/nets.py" in the home folder, as the CLI takes it
    if not file.is_file():
        raise RecipeError(f"No file {path} for {spec!r}; check the path (relative to the current folder).")
    code = hashlib.sha256(file.read_bytes()).hexdigest()
    name = f"mnistlab_user_{file.stem.replace('-', '_')}_{code[:12]}"
    sys.path.extend({str(file.resolve().parent)} - set(sys.path))  # its own imports (layers.py), as `python file.py`
    if name in sys.modules:
        return sys.modules[name], code
    loader_spec = importlib.util.spec_from_file_location(name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise RecipeError(f"Cannot load {path} as Python for {spec!r}; point at a .py file.")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's code failed, or exited (sys.exit, argparse): say how
        del sys.modules[name]
        raise RecipeError(f"Running {path} for {spec!r} failed ({type(exc).__name__}: {exc}); fix the file.") from None
    return module, code


def _import(target: str, spec: str):
    try:
        return importlib.import_module(target)
    except (Exception, SystemExit) as exc:  # ModuleNotFoundError, or any error (or exit) of the module's own code
        raise RecipeError(
            f"Cannot import module {target!r} for {spec!r} ({type(exc).__name__}: {exc}); "
            "check the name and that it is on PYTHONPATH, or give 'path/to/file.py:callable'."
        ) from None


def _attribute(module, attr: str, spec: str):
    if not attr or not hasattr(module, attr):
        raise RecipeError(f"{spec!r} names no {attr!r} in its module; give 'module:callable' with an existing name.")
    value = getattr(module, attr)
    if not callable(value):
        kind = type(value).__name__
        raise RecipeError(
            f"{spec!r} is not callable (it is {'an' if kind[0] in 'aeiou' else 'a'} {kind}); "
            "point at a function that returns a classifier."
        )
    return value


def _keywords(fn: Callable) -> set[str]:
    """Which of the ``seed`` and ``n_jobs`` keywords ``fn`` accepts."""
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {k for k in ("seed", "n_jobs") if takes_all or k in params}


def _seeded(estimator, seed: int):
    """``estimator`` with every ``random_state`` parameter (its own and its parts') set to ``seed``."""
    seeds = {k: seed for k in estimator.get_params(deep=True) if k == "random_state" or k.endswith("__random_state")}
    return estimator.set_params(**seeds) if seeds else estimator


def _as_estimator(obj, seed: int, n_jobs: int):
    """A classifier as is; a torch module as ``CNNClassifier(module=obj)`` seeded by ``seed``."""
    torch = sys.modules.get("torch")  # a module can only exist once torch has been imported
    if torch is not None and isinstance(obj, torch.nn.Module):
        from mnistlab.models.cnn.estimator import CNNClassifier  # torch is already loaded here

        return CNNClassifier(module=obj, random_state=seed, n_threads=1 if n_jobs == -1 else n_jobs)
    return obj


def _from_object(fn: Callable, name: str, spec: str, code: str | None, in_process: bool) -> Contender:
    """A contender built by calling ``fn``; called once now to check it returns a classifier."""
    probe = _built(fn, spec, 0, 1)

    def build(seed: int, n_jobs: int) -> Any:
        # Checked at every call: code that works for seed 0 and n_jobs 1 may fail for the run's own.
        return _built(fn, spec, seed, n_jobs)

    family = "cnn" if is_cnn(probe) else "classic"
    doc = (inspect.getdoc(fn) or "").split("\n")[0]
    recipe = Recipe(name, doc or f"your classifier from {spec}", build, family=family, cv=0)
    return Contender(recipe, code, spec, in_process)


def _built(fn: Callable, spec: str, seed: int, n_jobs: int):
    """``fn``'s classifier for ``seed`` and ``n_jobs`` (a torch module as ``CNNClassifier``), or one sentence on
    why there is none: the user's code failed, or returned no classifier mnistlab can clone and record."""
    keywords = _keywords(fn)
    try:
        made = fn(**{k: v for k, v in (("seed", seed), ("n_jobs", n_jobs)) if k in keywords})
    except (Exception, SystemExit) as exc:  # the user's code failed, or exited (sys.exit, argparse): say how
        raise RecipeError(
            f"Calling {spec} for seed {seed} (n_jobs {n_jobs}) failed ({type(exc).__name__}: {exc}); fix the callable."
        ) from None
    made = _as_estimator(made, seed, n_jobs)
    fits = callable(getattr(made, "fit", None)) and callable(getattr(made, "predict", None))
    if isinstance(made, type) or not fits:
        what = f"the class {made.__name__}" if isinstance(made, type) else f"a {type(made).__name__}"
        raise RecipeError(
            f"{spec} returned {what}, not a classifier; return an unfitted scikit-learn classifier (an instance, with "
            "fit and predict) or a torch.nn.Module."
        )
    _check_parameters(made, f"{spec} returned a {type(made).__name__}, which")
    if "seed" in keywords:  # else seeded as an object is: random_state None repeats no run, a number no seed
        return made
    try:
        return _seeded(made, seed)
    except Exception as exc:
        raise RecipeError(
            f"Cannot set the random_state of the {type(made).__name__} that {spec} returned to seed {seed} "
            f"({type(exc).__name__}: {exc}); let the callable take a seed keyword and seed it itself."
        ) from None


def _check_parameters(estimator, what: str) -> None:
    """Refuse a classifier whose ``get_params`` is missing or fails: cross-validation clones it, and its run and card
    record its parameters, so it failed in a traceback once the data was loaded. ``what`` begins the sentence."""
    try:
        estimator.get_params(deep=True)
    except Exception as exc:  # none at all, or an __init__ that keeps an argument under another name
        has = callable(getattr(estimator, "get_params", None))
        raise RecipeError(
            f"{what} fails in get_params ({type(exc).__name__}: {exc}); keep each argument of its __init__ unchanged "
            "in an attribute of the same name, which scikit-learn's get_params reads."
            if has
            else f"{what} has fit and predict but no get_params, which mnistlab needs to clone, record and save it; "
            "subclass sklearn.base.BaseEstimator (and ClassifierMixin), as scikit-learn's classifiers do."
        ) from None


def _from_estimator(estimator) -> Contender:
    """A contender cloned from an unfitted classifier, every ``random_state`` set to the seed."""
    from sklearn.base import clone  # scikit-learn: only once a comparison runs

    def build(seed: int, n_jobs: int) -> Any:
        return _seeded(clone(estimator), seed)

    name = type(estimator).__name__
    try:  # now, not once the data is loaded: an __init__ that changes its parameters cannot be cloned
        build(0, 1)
    except Exception as exc:
        raise RecipeError(
            f"Cannot clone your {name} for each seed ({type(exc).__name__}: {exc}); fix the classifier's code."
        ) from None
    family = "cnn" if is_cnn(estimator) else "classic"
    recipe = Recipe(name, f"your {name}", build, family=family, cv=0)
    return Contender(recipe, source_sha256(inspect.getmodule(type(estimator))), name)


def check_for_data(contender: Contender, n_classes: int, image_shape: tuple[int, int]) -> None:
    """Refuse a torch module that does not map these images to one logit per class, before anything trains."""
    module = getattr(contender.recipe.build(0, 1), "module", None)
    if module is None:
        return
    from mnistlab.models.cnn.usernet import check_module  # torch is loaded already: the module exists

    try:
        check_module(module, n_classes, image_shape)
    except RecipeError as exc:
        raise RecipeError(f"{contender.spec}: {exc}") from None
