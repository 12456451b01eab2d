"""Export a model for deployment and check each file against it: python export.py model_path=best.pt
output_dir=exported formats=[onnx,onnx_int8,torchscript,torchscript_int8] calibration_audio=calib/ (default: the bundled
model, checked and calibrated on its samples)"""
import hydra

from deepspeech_pytorch.cli import command_line, run_export
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="export")
def main(config) -> None:
    run_export(config)


if __name__ == "__main__":
    with command_line("export"):
        main()
