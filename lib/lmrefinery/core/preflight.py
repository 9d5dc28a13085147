"""Checks made before any stage runs, so a typo or an unreachable path is an
error at load (exit 2, naming the key or path, with a "did you mean" where one
fits) rather than a traceback after the earlier stages have run.

What is checked: the stage names given to ``--stages`` / ``--force``, every
input's reader format, tokenizer paths of ``tokenize`` stages (a Hub id gets a
message of its own: nothing is downloaded at run time), that the output can be
written, and S3 credentials when any path is ``s3://``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from . import storage
from .names import unknown_name
from .recipe import Recipe, RecipeError
from .stage import get_stage


@dataclass
class Preflight:
    """Everything a run is about to touch, checked without doing any work."""

    recipe: Recipe
    only: list[str] | None = None
    force: list[str] | None = None

    @property
    def src(self) -> str:
        return self.recipe.source_file or "<recipe>"

    def run(self) -> None:
        self.check_stage_selection()
        self.check_formats()
        self.check_tokenizers()
        self.check_s3_credentials()
        self.check_output_writable()

    def check_stage_selection(self) -> None:
        names = [s.stage for s in self.recipe.stages]
        for flag, chosen in (("--stages", self.only), ("--force", self.force)):
            for name in chosen or []:
                if name not in names:
                    raise RecipeError(f"{flag} {name}: {unknown_name('stage of this recipe', name, names)}")

    def check_formats(self) -> None:
        if not any(s.stage == "read" for s in self.recipe.stages):
            return
        reader = get_stage("read")
        for i, spec in enumerate(self.recipe.inputs):
            try:
                reader.check_input(spec.format, spec.options)
            except KeyError as e:
                raise RecipeError(f"{self.src}: key 'inputs[{i}].format' ({spec.name}): {e.args[0]}") from None

    def check_tokenizers(self) -> None:
        for i, s in enumerate(self.recipe.stages):
            path = s.params.get("tokenizer") if s.stage == "tokenize" else None
            if path:
                problem = tokenizer_problem(str(path))
                if problem:
                    raise RecipeError(f"{self.src}: key 'stages[{i}].tokenizer': {problem}")

    def s3_uris(self) -> list[str]:
        uris = [self.recipe.output] + [p for spec in self.recipe.inputs for p in spec.paths]
        return [u for u in uris if storage.is_s3(u)]

    def check_s3_credentials(self) -> None:
        uris = self.s3_uris()
        if not uris:
            return
        import boto3

        if boto3.session.Session().get_credentials() is None:
            raise RecipeError(f"{uris[0]}: no AWS credentials found. Set AWS_ACCESS_KEY_ID/"
                              "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance role; "
                              "for S3-compatible servers also AWS_ENDPOINT_URL.")

    def check_output_writable(self) -> None:
        out = self.recipe.output
        if storage.is_s3(out):
            return  # a probe PUT would need delete rights too; credentials are checked above
        existing = os.path.abspath(out)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise RecipeError(f"{self.src}: key 'output': {existing} is a file, not a folder "
                              f"(output {out})")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise RecipeError(f"{self.src}: key 'output': {existing} is not writable (output {out})")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def tokenizer_problem(path: str) -> str | None:
    """Why ``path`` cannot be used as a tokenizer, or None when it can."""
    if storage.is_s3(path):
        if storage.list_files(path.rstrip("/") + "/") or storage.exists(path):
            return None
        return f"{path}: no tokenizer files at this S3 location"
    if os.path.isdir(path):
        if any(os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
            return None
        return f"{path}: folder has no tokenizer.json"
    if os.path.isfile(path):
        return None
    if _HUB_ID.match(path) and not path.startswith("."):
        return (f"{path}: no such file or folder; Hugging Face Hub ids are not supported offline, "
                "pass a local folder holding tokenizer.json (e.g. one saved with save_pretrained)")
    return f"{path}: no such file or folder (resolved to {os.path.abspath(path)})"
