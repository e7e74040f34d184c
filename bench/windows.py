"""Sliding-window weighting, constant against Gaussian, on a registry task in both evaluation
modes: Dice of the same fine-tuned weights scored with each window.

  python bench/windows.py [--cases 12] [--steps 150] [--unseen 16] [--out FILE]

The download is ACDC's layout (database/training/patientNNN/patientNNN_frameXX[_gt].nii.gz,
the first cases of the shipped train and val lists) holding synthetic hearts: nested
ellipsoids (LV in the myocardium, the RV beside them) at a random place and size, in noise,
on a scanner grid (1.25 x 1.2 x 4.9 mm, axes flipped and mixed). For each evaluation mode
("paper": the shipped val list scored; "heldout": a test split held out of the training list),
unet_tiny is fine-tuned with the mode's own window; then its selected weights are scored with
both windows on that mode's cases and on `unseen` hearts that no run trained or selected on.
Prints one JSON line.
"""

import argparse
import json
import os
import sys
import tempfile

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

AFFINE = np.array([[-1.25, 0.0, 0.0, 90.0],
                   [0.0, -1.2, 0.4, 120.5],
                   [0.0, 0.25, 4.9, -60.0],
                   [0.0, 0.0, 0.0, 1.0]])


def heart(rng, shape=(48, 40, 10)):
  """(image, label) of one synthetic heart: classes 1 RV, 2 myocardium, 3 LV."""
  grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
  centre = np.array(shape) / 2 + rng.uniform(-4, 4, 3) * (1, 1, 0.2)
  size = rng.uniform(0.8, 1.2) * np.array([10, 9, 3])
  r = np.sqrt((((grid - centre) / size) ** 2).sum(-1))
  rv = np.sqrt((((grid - centre - (size[0] * 1.3, 0, 0)) / (size * (0.7, 0.9, 1))) ** 2)
               .sum(-1))
  label = np.where(r < 0.6, 3, np.where(r < 1, 2, np.where(rv < 1, 1, 0))).astype(np.uint8)
  image = 100 + 40 * label + rng.normal(0, 25, shape)
  image[:3] = 0  # air: the foreground crop cuts it
  return image.astype(np.float32), label


def write_acdc(root, cases, seed=0, shape=(48, 40, 10)):
  """The first `cases` of each shipped ACDC list (train, val), as synthetic hearts."""
  from rasd_jax.data import downloads
  lists = downloads.shipped("acdc.json")
  rng = np.random.default_rng(seed)
  for name in lists["train"][:cases] + lists["val"][:cases]:
    patient = name.split("_")[0]
    folder = os.path.join(root, "database", "training", patient)
    os.makedirs(folder, exist_ok=True)
    frames = sorted(n for n in lists["train"] + lists["val"] if n.startswith(patient + "_"))
    with open(os.path.join(folder, "Info.cfg"), "w") as f:
      f.write(f"ED: {int(frames[0][-2:])}\nES: {int(frames[-1][-2:])}\nGroup: NOR\n"
              "Height: 180.0\nNbFrame: 30\nWeight: 80.0\n")
    image, label = heart(rng, shape)
    nib.save(nib.Nifti1Image(image, AFFINE), os.path.join(folder, f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(label, AFFINE), os.path.join(folder, f"{name}_gt.nii.gz"))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cases", type=int, default=12)
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--unseen", type=int, default=16)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  from flax import nnx
  from experiments import finetune as finetune_experiment
  from rasd_jax.data import prepared
  from rasd_jax.data import sources
  from rasd_jax.data import tasks
  from rasd_jax.training import downstream
  from rasd_jax.jobs import finetune as finetune_job
  from rasd_jax.training import weights
  from rasd_jax.evaluation import evaluators

  root = tempfile.mkdtemp()
  write_acdc(os.path.join(root, "download"), args.cases)
  prepared.prepare("acdc", os.path.join(root, "download"), os.path.join(root, "data"),
                   allow_missing=True, progress=False, log=lambda line: None)
  # Hearts no run trains or selects on: the same window comparison without selection bias.
  unseen, rng = [], np.random.default_rng(1)
  os.makedirs(os.path.join(root, "unseen"))
  for i in range(args.unseen):
    image, label = heart(rng)
    paths = [os.path.join(root, "unseen", f"{i}{s}.nii.gz") for s in ("", "_gt")]
    nib.save(nib.Nifti1Image(image, AFFINE), paths[0])
    nib.save(nib.Nifti1Image(label, AFFINE), paths[1])
    unseen.append({"image": paths[0], "label": paths[1], "id": str(i)})
  line = {"task": "acdc", "cases_per_list": args.cases, "unseen": args.unseen,
          "steps": args.steps}
  for mode in tasks.EVALUATIONS:
    config = finetune_experiment.get_config("task=acdc,runlocal")
    config.data.dir = os.path.join(root, "data")
    config.model, config.evaluation, config.roi = "unet_tiny", mode, (16, 16, 8)
    config.total_steps, config.eval_every_steps = args.steps, args.steps // 3
    workdir = os.path.join(root, mode)
    results = finetune_job.run(config, workdir)
    task, split = finetune_job._cases(config)
    scored = "test" if mode == "heldout" else "val"
    model = weights.load_model(workdir)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    spec = weights.read_spec(workdir)
    for part, entries in ((scored, split[scored]), ("unseen", unseen)):
      samples = sources.prepare_cases(task, entries, threads=2)
      for window in ("constant", "gaussian"):
        segment = downstream.make_segment(graphdef, task.roi, config.overlap, spec["output"],
                                          window)
        summary = evaluators.score_segmentation(segment, {"params": params, "rest": rest},
                                                samples, task)
        line[f"{mode}_{part}_{window}_dice"] = round(summary["dice"], 4)
        line[f"{mode}_{part}_{window}_hd95"] = round(summary["hd95"], 3)
      line[f"{mode}_{part}_cases"] = len(samples)
    line[f"{mode}_reported_dice"] = round(results[scored]["dice"], 4)
  print(json.dumps(line))
  if args.out:
    with open(args.out, "a") as f:
      f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
  main()
