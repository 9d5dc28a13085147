import os

import pytest

from lmrefinery.core.recipe import RecipeError, load_recipe

BASE = {
    "name": "t", "output": "/tmp/out",
    "inputs": [{"name": "a", "paths": ["/tmp/a.jsonl"]}],
    "stages": [{"stage": "read"}, {"stage": "length_filter", "min_chars": 10}],
}


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return str(p)


def test_valid_recipe_inline_params_and_defaults(tmp_path):
    r = load_recipe(BASE)
    assert r.engine == "ray"
    assert r.stages[1].params == {"min_chars": 10}
    assert r.resources.workers == 2


def test_unknown_top_level_key_names_file_and_key(tmp_path):
    p = write(tmp_path, "name: t\noutput: x\nstagez: []\nstages: [read]\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert p in str(e.value) and "unknown key 'stagez'" in str(e.value)


def test_unknown_stage_param_is_an_error(tmp_path):
    p = write(tmp_path, "name: t\noutput: x\nstages:\n  - stage: length_filter\n    min_char: 5\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert "stages[0].params.min_char" in msg and p in msg


def test_unknown_stage_lists_known_ones(tmp_path):
    p = write(tmp_path, "name: t\noutput: x\nstages: [nosuch]\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "unknown stage 'nosuch'" in str(e.value) and "length_filter" in str(e.value)


def test_wrong_type_says_what_was_expected(tmp_path):
    p = write(tmp_path, "name: t\noutput: x\nresources: {workers: many}\nstages: [read]\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "resources.workers" in str(e.value) and "integer" in str(e.value)


def test_env_interpolation_with_default_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("LMR_T_BUCKET", "s3://my-bucket")
    p = write(tmp_path, "name: t\noutput: ${LMR_T_BUCKET}/out\ninputs:\n"
                        "  - {name: a, paths: ['${LMR_T_IN:-/data}/x.jsonl']}\nstages: [read]\n")
    r = load_recipe(p)
    assert r.output == "s3://my-bucket/out"
    assert r.inputs[0].paths == ["/data/x.jsonl"]
    monkeypatch.delenv("LMR_T_BUCKET")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "LMR_T_BUCKET" in str(e.value) and "'output'" in str(e.value)


def test_set_overrides_by_stage_name_and_index():
    r = load_recipe(BASE, ["stages.length_filter.min_chars=99", "resources.workers=1", "stages.1.max_chars=500",
                           "engine=spark"])
    assert r.stages[1].params == {"min_chars": 99, "max_chars": 500}
    assert r.resources.workers == 1 and r.engine == "spark"
    with pytest.raises(RecipeError):
        load_recipe(BASE, ["stages.nosuch.x=1"])
    with pytest.raises(RecipeError):
        load_recipe(BASE, ["justakey"])


def test_shipped_recipes_validate():
    root = os.path.join(os.path.dirname(__file__), "..", "conf", "pipelines")
    for f in sorted(os.listdir(root)):
        if f.endswith(".yaml"):
            load_recipe(os.path.join(root, f))
