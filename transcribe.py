"""Transcribe audio files to JSON lines: python transcribe.py model_path=best.pt audio_path=speech.wav
(or name the files, folders too: python transcribe.py a.wav "b c.flac" recordings/)"""
import os

from deepspeech_pytorch import quick_config
from deepspeech_pytorch.cli import command_line, run_transcribe
from deepspeech_pytorch.configs import TranscribeConfig

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def main(config) -> None:
    run_transcribe(config)


def hydra_main() -> None:
    """Hydra reads what quick_config leaves to it: --help, --cfg job, +key=..., mistakes (same config, same errors)."""
    import hydra

    from deepspeech_pytorch.configs import register_configs

    register_configs()
    hydra.main(version_base="1.3", config_path="configs", config_name="transcribe")(main)()


if __name__ == "__main__":
    with command_line("transcribe", positional="audio_path"):
        if not quick_config.run(main, TranscribeConfig, "transcribe", CONFIG_DIR):  # key=value only: no Hydra
            hydra_main()
