"""Run a fine-tuned network on new images: label maps in each input's own space, or a table.

python run.py --config=experiments/predict.py --config.model=W --config.input=PATH --workdir=OUT
W: a fine-tuning workdir (or any workdir with weights, with --config.task=NAME: the registry
task whose classes the network outputs). PATH: an image file, a DICOM series folder, a folder
of images, a glob ('scans/*.nii.gz', quoted) or a Decathlon dataset.json (its `json_section`
list). Segmentation: OUT/predictions/<name>.nii.gz (.png for PNG/JPEG/TIFF inputs) on the
input's grid, with --config.probabilities=true also <name>_probabilities; classification,
multi-label and regression: OUT/predictions.csv. A rerun skips what is done.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.job = "predict"
  config.model = ""             # the workdir of the network (W/task.json says its task)
  config.input = ""             # a file, folder, glob or Decathlon dataset.json
  config.json_section = "test"  # the dataset.json list to predict
  config.task = ""              # a registry task, for a workdir without task.json
  config.probabilities = False  # segmentation: also each class's probability map
  config.batch_size = 4         # windows (segmentation) or images per call of the network
  return config
