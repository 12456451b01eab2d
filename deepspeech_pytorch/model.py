"""Moved: DeepSpeech2 lives in `deepspeech_pytorch.models.deepspeech2`, behind the model registry
(`deepspeech_pytorch.models`). This module keeps the old import path working."""

from deepspeech_pytorch.models import count_parameters  # noqa: F401
from deepspeech_pytorch.models.deepspeech2 import (CONV_LAYERS, BatchRNN, DeepSpeech2, Lookahead,  # noqa: F401
                                                   MaskedConv, SequenceWise, conv_output_size, padding_mask,
                                                   reversal_index)
