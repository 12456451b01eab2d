"""Transcribe audio files to JSON lines: python transcribe.py model_path=best.pt audio_path=speech.wav
(or name the files, folders too: python transcribe.py a.wav "b c.flac" recordings/)"""
import hydra

from deepspeech_pytorch.cli import command_line, run_transcribe
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="transcribe")
def main(config) -> None:
    run_transcribe(config)


if __name__ == "__main__":
    with command_line("transcribe", positional="audio_path"):
        main()
