"""Train a DeepSpeech2 model: python train.py data.train_manifest=train.jsonl data.val_manifest=val.jsonl"""
import hydra

from deepspeech_pytorch.cli import command_line, run_train
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(config) -> None:
    run_train(config)


if __name__ == "__main__":
    with command_line("train"):
        main()
