"""Import PyTorch weights (a MONAI SwinUNETR or UNet checkpoint) into a rasd_jax workdir.

python run.py --config=experiments/import_weights.py --config.path=FILE \
    --config.model=NAME --config.ndim=N --workdir=W
FILE: a `.pth`/`.pt` (a state dict, or one under `state_dict`, `model`, `network_weights`)
or a `.safetensors` file. W then holds model.json, checkpoints/0 and import.txt (what
loaded): `rasd_jax.load_model(W)` and `--config.init=W` (finetune, suite) take it.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.job = "import_weights"
  config.path = ""         # the checkpoint file
  config.model = ""        # the rasd_jax network: swinunetr_base (or a size: base), unet_paper...
  config.ndim = 0          # 2 or 3
  config.in_channels = 0   # 0: the checkpoint's; another width leaves the first layer fresh
  config.out_channels = 0  # 0: the checkpoint's (32 without an output layer)
  config.seed = 0          # initialises what the checkpoint lacks (a v1's v2 blocks)
  return config
