"""Export a workdir's weights for PyTorch.

python run.py --config=experiments/export_weights.py:format=monai --config.source=W \
    --workdir=OUT
format=monai: a SwinUNETR or UNet (pre-trained, imported, or fine-tuned with dense outputs)
as MONAI's `SwinUNETR(..., use_v2=True)` or `UNet(..., act="relu", norm="batch")`:
OUT/model.safetensors, OUT/model.pt (where PyTorch is installed). format=nnunet: a ResEnc
U-Net as nnU-Net v2's pre-trained weights. Both write OUT/card.json and OUT/README.md
(constructor arguments, provenance, how to load it). W is any workdir with model.json (or
W/checkpoints/STEP for one step).
"""

import ml_collections

from rasd_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, format="monai")
  config = ml_collections.ConfigDict()
  config.job = "export_weights"
  config.format = arg.format
  config.source = ""  # the workdir whose weights are exported
  # --workdir must be new, empty or an export of ours; True: any folder, whose files of the
  # names the export writes (config.json, card.json, README.md, the weights) are replaced.
  config.overwrite = False
  return config
