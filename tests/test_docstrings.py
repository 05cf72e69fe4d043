"""The examples in the public API's docstrings run as shown (doctest), and what their text says holds."""

from __future__ import annotations

import doctest
import inspect
import json
import sys


def run_examples(obj) -> doctest.TestResults:
    """Run the ``>>>`` examples of ``obj``'s docstring in its module's namespace; fail on any that differs."""
    module = sys.modules[obj.__module__]
    finder, runner = doctest.DocTestFinder(recurse=False), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(obj, obj.__name__, module=module, globs=vars(module).copy()):
        runner.run(test)
    return runner.summarize(verbose=False)


def test_load_mnist_says_which_values_uint8_holds_for_scikit_learns_digits():
    """help(load_mnist) said uint8 is 0-255; scikit-learn's digits come as 0-16, which mnistlab's models read as
    0-255 (logistic regression fitted on them as loaded: 70.3% on the test set, as floats in 0-1 87.5%)."""
    from mnistlab import load_mnist

    assert "0-16" in inspect.getdoc(load_mnist)
    failed, attempted = run_examples(load_mnist)
    assert attempted and not failed


def test_a_spec_files_model_is_saved_where_default_model_dir_of_its_name_says(tmp_path):
    """help(default_model_dir) said it gives where `mnistlab train` saves a spec file's model, ``models_root() /
    recipe``, and help(train_recipe) ``default_model_dir(recipe)``: for a spec file that is a folder named after the
    file (or the file itself, for an absolute path), while train saves under the "name" the spec holds."""
    from mnistlab import default_model_dir, load_split, train_recipe

    spec = tmp_path / "best.json"
    spec.write_text(json.dumps({"recipe": "knn", "name": "knn-tuned", "params": {"knn__n_neighbors": 1}}))
    result = train_recipe(str(spec), data=load_split("digits"), n_jobs=1)
    assert result["model_dir"] == str(default_model_dir("knn-tuned"))
    for documented in (default_model_dir, train_recipe):
        assert "spec file holds" in inspect.getdoc(documented)
    failed, attempted = run_examples(default_model_dir)
    assert attempted and not failed
