"""Run one model of examples/gemma/run.toml on its own (to run models in parallel processes).

    python examples/gemma/run_one_model.py MODEL_NAME OUT_DIR [--resume]

The noise of a row depends on (task, prompt, seed, mode, model name) only -- never on the other
models of a run -- so separate one-model runs give exactly the rows of the joint run, and their
output folders can be read together (the shard names carry the model).
"""

import sys
import tomllib
from pathlib import Path

from coupled.runner import run

HERE = Path(__file__).resolve().parent


def one_model_config(name: str) -> dict:
    config = tomllib.loads((HERE / "run.toml").read_text())
    config["task"]["path"] = str(HERE / config["task"]["path"])
    for model in config["models"]:
        model["path"] = str((HERE / model["path"]).resolve())
    config["models"] = [m for m in config["models"] if m["name"] == name]
    if not config["models"]:
        raise SystemExit(f"no model named {name!r} in {HERE / 'run.toml'}")
    return config


if __name__ == "__main__":
    run(one_model_config(sys.argv[1]), out=sys.argv[2], resume="--resume" in sys.argv[3:])
