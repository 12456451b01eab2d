"""Evaluate a model's WER/CER on a manifest: python test.py model_path=best.pt test_manifest=test.jsonl"""
import hydra

from deepspeech_pytorch.cli import command_line, run_eval
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(config) -> None:
    run_eval(config)


if __name__ == "__main__":
    with command_line("eval"):
        main()
