"""Speed figures as JSON.

python benchmark.py preset=ds2_original batch_size=8 seconds=5          # training step ms and inference RTF
python benchmark.py bundled=true                                         # the same for the bundled model
python benchmark.py mode=throughput batch_sizes=[1,4,16] precisions=[fp32,bf16]
torchrun --nproc_per_node=2 benchmark.py mode=throughput                 # the same under DDP
"""
import json

import hydra

from deepspeech_pytorch.benchmarking import benchmark, format_table, throughput
from deepspeech_pytorch.cli import reports_user_errors
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="benchmark")
@reports_user_errors
def main(c) -> None:
    if c.mode == "throughput":
        if c.model_path is not None or c.bundled:
            raise ValueError("model_path and bundled are for mode=speed; throughput mode measures presets")
        rows = throughput(c.preset, list(c.batch_sizes), c.seconds, list(c.precisions), c.device, c.warmup, c.repeats,
                          c.find_largest_batch)
        if rows:
            print(format_table(rows), flush=True)
            print(json.dumps(rows))
    elif c.mode == "speed":
        print(json.dumps(benchmark(c.preset, c.batch_size, c.seconds, c.device, c.warmup, c.repeats,
                                   model_path=c.model_path, bundled=c.bundled)))
    else:
        raise ValueError(f"unknown mode {c.mode!r}; choose speed or throughput")


if __name__ == "__main__":
    main()
