"""A local Google Cloud Storage for tests: the gcp-storage-emulator package serving an in-memory
bucket on 127.0.0.1, in a subprocess of its own, and the environment that points every client
at it:

- gcsfs (what etils.epath opens gs:// paths with) and google-cloud-storage (tensorboardX's
  gs:// writer): STORAGE_EMULATOR_HOST;
- tensorstore (Orbax's arrays): TENSORSTORE_GCS_HTTP_URL, and GOOGLE_AUTH_TOKEN_FOR_TESTING
  instead of credentials.

One change to the emulator: its object downloads lack the x-goog-generation header that GCS
sends and tensorstore reads (without it every read of an existing object is "Malformed
StorageGeneration"), so the launcher adds it.

`gcs` (pytest fixture, one emulator per test module) also sets that environment in this
process; subprocesses get it from `gcs.env` or by inheriting os.environ.
"""

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time

import pytest

BUCKET = "bucket"

_LAUNCHER = r"""
import sys
from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import objects

original = objects.download

def download(request, response, storage, *args, **kwargs):
  original(request, response, storage, *args, **kwargs)
  if response.status.value in (200, 206):
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    response["x-goog-generation"] = obj["generation"]
    response["x-goog-metageneration"] = obj["metageneration"]

objects.download = download  # objects.get (?alt=media) calls it by this name
for _, methods in server.HANDLERS:
  for method, handler in list(methods.items()):
    if handler is original:
      methods[method] = download
server.create_server("127.0.0.1", int(sys.argv[1]), in_memory=True,
                     default_bucket=sys.argv[2]).run()
"""


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def client_env(url):
  """The variables that send gcsfs, google-cloud-storage and tensorstore to `url`."""
  return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
          "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
          # gcsfs's hierarchical-bucket probe asks an API the emulator does not have.
          "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


@dataclasses.dataclass
class Emulator:
  url: str
  bucket: str
  env: dict  # os.environ with client_env(url)

  def objects(self, prefix=""):
    """The object names under gs://bucket/prefix, sorted."""
    from gcsfs import core  # the plain file system, whatever GCSFS_EXPERIMENTAL_... says
    fs = core.GCSFileSystem(endpoint_url=self.url, token="anon", skip_instance_cache=True)
    root = f"{self.bucket}/{prefix}".rstrip("/")
    return sorted(p[len(self.bucket) + 1:] for p in fs.find(root))


@contextlib.contextmanager
def emulator(bucket=BUCKET, timeout=30):
  """An Emulator serving an empty `bucket` until the block ends."""
  port = free_port()
  process = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(port), bucket],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + timeout
    while True:
      try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
      except OSError:
        if process.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f"the GCS emulator did not start on port {port}") from None
        time.sleep(0.1)
    url = f"http://127.0.0.1:{port}"
    yield Emulator(url, bucket, dict(os.environ, **client_env(url)))
  finally:
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def gcs():
  """An Emulator for the test module, its client environment set in this process too."""
  with emulator() as emu, pytest.MonkeyPatch.context() as patch:
    for key, value in client_env(emu.url).items():
      patch.setenv(key, value)
    import gcsfs
    gcsfs.GCSFileSystem.clear_instance_cache()  # an instance made before would miss the URL
    yield emu
    gcsfs.GCSFileSystem.clear_instance_cache()
