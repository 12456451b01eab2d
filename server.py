"""Serve transcription over HTTP: python server.py model_path=best.pt port=8000 (see ServerConfig for the settings)"""
import hydra

from deepspeech_pytorch.cli import command_line, run_serve
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="server")
def main(config) -> None:
    run_serve(config)


if __name__ == "__main__":
    with command_line("server"):
        main()
