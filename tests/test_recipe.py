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


def test_typoed_reader_option_is_an_error_naming_file_and_key(tmp_path):
    """inputs[].options are validated by the format's options model, as stage parameters are:
    `extracter` (typo of `extractor`) must not run silently with the default extractor."""
    p = write(tmp_path, "name: t\noutput: x\ninputs:\n  - name: web\n    format: warc\n    paths: [a.warc.gz]\n"
                        "    options: {extracter: resiliparse}\nstages: [read]\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert p in msg and "unknown key 'inputs[0].options.extracter'" in msg and "extractor" in msg
    bad_value = write(tmp_path, "name: t\noutput: x\ninputs:\n  - {name: w, format: warc, paths: [a],"
                                " options: {extractor: boilerpipe}}\nstages: [read]\n")
    with pytest.raises(RecipeError, match=r"inputs\[0\]\.options\.extractor"):
        load_recipe(bad_value)
    with pytest.raises(RecipeError, match=r"inputs\[0\]\.format.*unknown input format 'wark'"):
        load_recipe(dict(BASE, inputs=[{"name": "a", "paths": ["x"], "format": "wark"}]))


def test_each_reader_family_accepts_its_own_options_only():
    ok = {"warc": {"extractor": "resiliparse", "include_tables": False, "split_bytes": 0},
          "mediawiki": {"namespaces": [0, 14], "timeout_s": 5},
          "jsonl": {"max_doc_bytes": 1000}, "json": {"records_key": "data"}, "csv": {"delimiter": ";"},
          "gutenberg": {"max_chars": 5000}, "sharegpt": {"messages_key": "turns", "lang": "zh"}}
    for fmt, options in ok.items():
        load_recipe(dict(BASE, inputs=[{"name": "a", "paths": ["x"], "format": fmt, "options": options}]))
    for fmt, options in {"jsonl": {"records_key": "data"}, "mediawiki": {"extractor": "trafilatura"},
                         "gutenberg": {"namespaces": [0]}}.items():
        key = next(iter(options))
        with pytest.raises(RecipeError, match=rf"unknown key 'inputs\[0\]\.options\.{key}'"):
            load_recipe(dict(BASE, inputs=[{"name": "a", "paths": ["x"], "format": fmt, "options": options}]))
