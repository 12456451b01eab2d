"""Mix a noise file into an audio file at a chosen SNR, to hear what noise augmentation does:
python noise_inject.py input_path=speech.wav noise_path=noise.wav output_path=mixed.wav snr_db=10"""
import hydra

from deepspeech_pytorch.cli import command_line, run_noise_inject
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="noise_inject")
def main(config) -> None:
    run_noise_inject(config)


if __name__ == "__main__":
    with command_line("noise_inject"):
        main()
