"""Executes the notebooks in place, keeping their outputs, so that they show their figures and
tables without being run (on GitHub, in Colab):

  python notebooks/execute.py                    # all of them
  python notebooks/execute.py finetune [...]     # some, by name

Each notebook runs at the sizes of its own parameter cell, top to bottom, in a Jupyter kernel of
this python, from a fresh temporary working folder (its runs/ and compilation cache land there,
not in the repository), with the repository on PYTHONPATH so that the install cell does nothing.
A cell that raises, or runs longer than --timeout seconds, stops the run with its traceback and
leaves the stored notebook as it was.

The stored outputs are what a notebook page shows: consecutive prints of a cell to one stream are
one output, and a line rewritten in place (a progress bar) is stored as its last state. The
temporary folder is written `.` (a workdir reads `./runs/...`) and no execution times are
recorded, so that a rerun changes only what the run itself changes. On one machine that is the
compile times and the progress bars' times and rates: the numbers and figures of pretraining
came out byte for byte the same in two runs here (2 CPU cores); another machine or jax version
may change the last digits of training results.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time

import jupyter_client
import nbclient
import nbformat

NOTEBOOKS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(NOTEBOOKS)
NAMES = ("synthesis_explorer", "pretraining", "finetune")
KERNEL = "python3"  # the name the notebooks' metadata give


def _kernel(folder):
  """A kernel manager whose KERNEL is this python, the repository first on its import path."""
  spec_dir = os.path.join(folder, "kernels", KERNEL)
  os.makedirs(spec_dir)
  path = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))
  with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
    json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
               "display_name": "Python 3", "language": "python", "env": {"PYTHONPATH": path}}, f)
  specs = jupyter_client.kernelspec.KernelSpecManager(kernel_dirs=[os.path.dirname(spec_dir)])
  return jupyter_client.manager.AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def _tidy(outputs, folder):
  """`outputs` as a page shows them: consecutive stream outputs of one name merged, each line
  its text after its last carriage return, and the working folder `folder` written `.`."""
  def strip(text):
    return text.replace(folder + os.sep, "." + os.sep).replace(folder, ".")
  merged = []
  for out in outputs:
    if (out.output_type == "stream" and merged and merged[-1].output_type == "stream"
        and merged[-1].name == out.name):
      merged[-1].text += out.text
    else:
      merged.append(out)
  for out in merged:
    if out.output_type == "stream":
      out.text = strip(re.sub(r"^[^\n]*\r(?!\n|$)", "", out.text.replace("\r\n", "\n"),
                              flags=re.MULTILINE))
    elif out.output_type == "error":
      out.evalue = strip(out.evalue)
      out.traceback = [strip(line) for line in out.traceback]
    else:
      for key, value in out.get("data", {}).items():
        if key.startswith("text/"):
          out.data[key] = strip(value)
  return merged


def execute(name, timeout):
  """Runs notebooks/<name>.ipynb and stores it with its outputs; returns the seconds it took."""
  path = os.path.join(NOTEBOOKS, f"{name}.ipynb")
  nb = nbformat.read(path, as_version=4)
  with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.realpath(os.path.join(tmp, "work"))  # the kernel's os.getcwd() is resolved
    os.makedirs(folder)
    manager = _kernel(tmp)
    client = nbclient.NotebookClient(nb, km=manager, timeout=timeout, record_timing=False,
                                     resources={"metadata": {"path": folder}})
    start = time.perf_counter()
    try:
      client.execute()  # Raises CellExecutionError (with the traceback) if a cell raises.
    finally:  # The client does not stop a kernel whose manager it was given.
      nbclient.util.run_sync(manager.shutdown_kernel)(now=True)
    seconds = time.perf_counter() - start
  for cell in nb.cells:
    if cell.cell_type == "code":
      cell.outputs = _tidy(cell.outputs, folder)
  nbformat.validate(nb)
  nbformat.write(nb, path)
  return seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("names", nargs="*", metavar="NAME",
                      help=f"notebooks to execute, of {', '.join(NAMES)} (default: all)")
  parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell")
  args = parser.parse_args()
  unknown = sorted(set(args.names) - set(NAMES))
  if unknown:
    parser.error(f"no notebook {', '.join(unknown)}; the notebooks: {', '.join(NAMES)}")
  for name in args.names or NAMES:
    seconds = execute(name, args.timeout)
    size = os.path.getsize(os.path.join(NOTEBOOKS, f"{name}.ipynb"))
    print(f"{name}.ipynb: executed in {seconds:.0f} s, {size / 1024:.0f} KiB", flush=True)


if __name__ == "__main__":
  main()
