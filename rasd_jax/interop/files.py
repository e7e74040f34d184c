"""Checkpoint files without PyTorch: read a state dict from a `.pth`/`.pt` or a `.safetensors`
file, write a `.safetensors` file.

A `.pth` is a pickle, and unpickling calls whatever the file names. `torch.save` writes either a
zip (`<name>/data.pkl`, the tensors' storages in `<name>/data/<key>`) or, before PyTorch 1.6 or
with `_use_new_zipfile_serialization=False`, one stream of pickles followed by the storages. The
reader here resolves only the names a state dict needs (tensor and parameter rebuilds, storage
types, OrderedDict) and the few plain values nnU-Net keeps next to its weights (NumPy scalars,
torch.device) to small functions of its own; any other name is refused before anything is called,
so a file that would run code under `torch.load(weights_only=False)` is an error, not an exploit.

Tensors are read lazily: only the state dict chosen (the top level, or the one under a usual
wrapper key) is copied out of the file, not the optimiser state or logs beside it. bfloat16
arrives as float32 (exact), since NumPy has no bfloat16 of its own; `info["dtypes"]` keeps the
stored dtype of every key.
"""

import collections
import io
import json
import math
import pickle
import struct
import zipfile
import zlib

from etils import epath
import ml_dtypes
import numpy as np

from rasd_jax import workdir as workdir_lib

# Keys under which training scripts keep the weights: PyTorch Lightning and most scripts
# (state_dict), MONAI bundles and timm (model), nnU-Net (network_weights), DINO (student).
WRAPPER_KEYS = ("state_dict", "model", "network_weights", "net", "student")

_DTYPES = [np.dtype(t) for t in (
    np.float64, np.float32, np.float16, ml_dtypes.bfloat16, np.int64, np.int32, np.int16,
    np.int8, np.uint64, np.uint32, np.uint16, np.uint8, np.bool_)]
_SAFETENSORS_CODES = dict(zip(
    _DTYPES, ("F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16",
              "U8", "BOOL")))
_SAFETENSORS_DTYPES = {code: dtype for dtype, code in _SAFETENSORS_CODES.items()}
_BY_NAME = {dtype.name: dtype for dtype in _DTYPES}
_BFLOAT16 = _BY_NAME["bfloat16"]
_TORCH_STORAGES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool"}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # First pickle of a pre-1.6 torch.save file.
_LEGACY_VERSION = 1001


class _Bad(Exception):
  """The file is not what it should be; the message says how (the path is added later)."""


class _Refused(_Bad):
  """The pickle names a global outside the allowed set."""


class _Record:
  """What a pickle reaches besides plain values. Pickle's BUILD (set attributes) is refused,
  so a file can change neither an object after its checks nor a function of this module."""
  __slots__ = ()

  def __setstate__(self, state):
    raise _Bad(f"a pickle that sets attributes of a {type(self).__name__[1:]}")


class _Global(_Record):
  """An allowed global: a function the pickle may call, or an element type (a storage class
  or torch dtype)."""
  __slots__ = ("function", "dtype")

  def __init__(self, function=None, dtype=None):
    self.function, self.dtype = function, dtype

  def __call__(self, *args):
    if self.function is None:
      raise _Bad("a pickle that calls a type")
    return self.function(*args)


class _Storage(_Record):
  """A storage the pickle refers to by key; its bytes stay in the file until needed."""
  __slots__ = ("key", "dtype")

  def __init__(self, key, dtype):
    self.key, self.dtype = key, dtype


class _Tensor(_Record):
  """A tensor found in the pickle: a strided view (in elements) of a storage."""
  __slots__ = ("key", "dtype", "offset", "shape", "strides")

  def __init__(self, storage, offset, shape, strides, dtype=None):
    if not isinstance(storage, _Storage):
      raise _Bad("a tensor without a storage")
    ints = [offset, *shape, *strides]
    if (not isinstance(shape, tuple) or not isinstance(strides, tuple)
        or len(shape) != len(strides)
        or not all(type(i) is int and i >= 0 for i in ints)):
      raise _Bad(f"a tensor of invalid shape {shape!r:.80} or strides {strides!r:.80}")
    self.key, self.dtype = storage.key, storage.dtype if dtype is None else dtype
    self.offset, self.shape, self.strides = offset, shape, strides


def _rebuild_tensor_v2(storage, offset, shape, strides, requires_grad=False, hooks=None,
                       metadata=None):
  del requires_grad, hooks, metadata  # Training-time attributes, meaningless here.
  return _Tensor(storage, offset, shape, strides)


def _rebuild_tensor_v3(storage, offset, shape, strides, requires_grad, hooks, dtype,
                       metadata=None):
  """The dtypes torch stores in an untyped storage (uint16/32/64)."""
  del requires_grad, hooks, metadata
  if not isinstance(dtype, _Global) or dtype.dtype is None:
    raise _Bad(f"a tensor of dtype {dtype!r:.80}")
  return _Tensor(storage, offset, shape, strides, dtype.dtype)


def _rebuild_parameter(data, requires_grad, hooks, state=None):
  """An nn.Parameter pickled as such (state_dict(keep_vars=True) or a parameter list)."""
  del requires_grad, hooks, state
  if not isinstance(data, _Tensor):
    raise _Bad(f"a parameter holding {type(data).__name__}")
  return data


def _device(kind, index=None):
  """torch.device, kept as its name (nnU-Net stores its training device)."""
  return kind if index is None else f"{kind}:{index}"


def _encode(text, encoding):
  """Python 3 bytes under pickle protocol 2 (torch's) are `_codecs.encode(str, 'latin1')`."""
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
    raise _Bad("bytes in an unexpected encoding")
  return text.encode("latin1")


class _NumpyDtype:
  """numpy.dtype of a NumPy scalar (nnU-Net logs its Dice scores as numpy.float64); numbers
  only: an object dtype would unpickle arbitrary objects."""

  def __init__(self, name, align=False, copy=False):
    del align, copy
    dtype = np.dtype(name) if isinstance(name, str) else None
    if dtype is None or dtype.kind not in "biufc":
      raise _Refused(f"numpy.dtype({name!r:.40})")
    self.dtype = dtype

  def __setstate__(self, state):
    self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_scalar(dtype, data):
  """The value as a Python number (a NumPy scalar would accept BUILD)."""
  if not isinstance(dtype, _NumpyDtype) or not isinstance(data, bytes):
    raise _Bad("an invalid NumPy scalar")
  return np.frombuffer(data, dtype.dtype, count=1)[0].item()


_GLOBALS = {
    ("collections", "OrderedDict"): _Global(collections.OrderedDict),
    ("torch._utils", "_rebuild_tensor_v2"): _Global(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor_v3"): _Global(_rebuild_tensor_v3),
    ("torch._utils", "_rebuild_parameter"): _Global(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Global(_rebuild_parameter),
    ("torch.storage", "UntypedStorage"): _Global(dtype=np.dtype(np.uint8)),
    ("torch", "UntypedStorage"): _Global(dtype=np.dtype(np.uint8)),
    ("torch", "device"): _Global(_device),
    ("_codecs", "encode"): _Global(_encode),
    ("numpy", "dtype"): _Global(_NumpyDtype),
    ("numpy.core.multiarray", "scalar"): _Global(_numpy_scalar),
    ("numpy._core.multiarray", "scalar"): _Global(_numpy_scalar),
    # Storage classes (rebuild v2) and dtypes (rebuild v3) both name an element type.
    **{("torch", dtype.name): _Global(dtype=dtype) for dtype in _DTYPES},
    **{("torch", storage): _Global(dtype=_BY_NAME[name])
       for storage, name in _TORCH_STORAGES.items()},
}


class _Unpickler(pickle.Unpickler):
  """Resolves globals from _GLOBALS only; storages through `persistent`."""

  def __init__(self, file, persistent=None):
    super().__init__(file)
    self._persistent = persistent

  def find_class(self, module, name):
    found = _GLOBALS.get((module, name))
    if found is None:
      raise _Refused(f"{module}.{name}")
    return found

  def persistent_load(self, pid):
    if self._persistent is None:
      raise _Bad("a storage reference where none belongs")
    return self._persistent(pid)


def _storage_pid(pid, length):
  """('storage', dtype, key, location, numel[, view]) -> (key, dtype)."""
  if (not isinstance(pid, tuple) or len(pid) != length or pid[0] != "storage"
      or not isinstance(pid[1], _Global) or pid[1].dtype is None
      or not isinstance(pid[2], str)):
    raise _Bad(f"an unexpected storage reference {pid!r:.80}")
  return pid[2], pid[1].dtype


def _read_zip(f):
  """PyTorch's zip format -> (unpickled object, read(key) -> bytes, byte order)."""
  archive = zipfile.ZipFile(f)
  names = archive.namelist()
  pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
  if len(pickles) != 1:
    raise _Bad("a zip file without one <name>/data.pkl: not written by torch.save")
  prefix = pickles[0][:-len("data.pkl")]
  byteorder = "<"
  if prefix + "byteorder" in names and archive.read(prefix + "byteorder") == b"big":
    byteorder = ">"

  def persistent(pid):
    return _Storage(*_storage_pid(pid, 5))

  obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), persistent).load()

  def read(key):
    name = f"{prefix}data/{key}"
    if name not in names:
      raise _Bad(f"storage {key!r} is missing")
    return archive.read(name)

  return obj, read, byteorder


def _read_legacy(f):
  """The pre-1.6 format: pickles of magic number, version, system info and the object, a
  pickled list of storage keys, then each storage as int64 element count + raw bytes (little
  endian whatever the machine)."""
  if _Unpickler(f).load() != _LEGACY_MAGIC:
    raise _Bad("a pickle, but not a PyTorch checkpoint")
  if _Unpickler(f).load() != _LEGACY_VERSION:
    raise _Bad("a PyTorch checkpoint of an unknown legacy version")
  _Unpickler(f).load()  # System information: type sizes, endianness of the writer.
  dtypes = {}

  def persistent(pid):
    key, dtype = _storage_pid(pid, 6)
    if pid[5] is not None:
      raise _Bad("storage views of the pre-1.6 format are not supported; load the file with "
                 "a current torch and save it again")
    dtypes[key] = dtype
    return _Storage(key, dtype)

  obj = _Unpickler(f, persistent).load()
  spans = {}
  for key in _Unpickler(f).load():
    (numel,) = struct.unpack("<q", f.read(8))
    spans[key] = (f.tell(), numel * dtypes[key].itemsize)
    f.seek(spans[key][1], io.SEEK_CUR)

  def read(key):
    if key not in spans:
      raise _Bad(f"storage {key!r} is missing")
    start, size = spans[key]
    f.seek(start)
    data = f.read(size)
    if len(data) != size:
      raise _Bad(f"truncated: storage {key!r} ends past the end of the file")
    return data

  return obj, read, "<"


def _materialize(name, tensor, read, byteorder, cache):
  """The NumPy array of `tensor`, copied out of its storage; bounds checked first, since a
  strided view past the storage would read foreign memory."""
  if tensor.key not in cache:
    cache[tensor.key] = read(tensor.key)
  raw = cache[tensor.key]
  dtype = _raw(tensor.dtype, byteorder)
  if len(raw) % dtype.itemsize:
    raise _Bad(f"storage {tensor.key!r} of {len(raw)} bytes holds no whole "
               f"{tensor.dtype.name}s")
  flat = np.frombuffer(raw, dtype)
  end = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.strides)) + 1
  if math.prod(tensor.shape) and end > flat.size:
    raise _Bad(f"tensor {name!r} of shape {tensor.shape} reaches past its storage of "
               f"{flat.size} elements: truncated or corrupt")
  view = np.lib.stride_tricks.as_strided(
      flat[tensor.offset:], tensor.shape, [s * dtype.itemsize for s in tensor.strides],
      writeable=False)
  return _native(view, tensor.dtype)


def _raw(dtype, byteorder):
  """How the elements of `dtype` are read: bfloat16 as its bits (uint16)."""
  return np.dtype(np.uint16 if dtype == _BFLOAT16 else dtype).newbyteorder(byteorder)


def _native(raw, dtype):
  """A writable copy of the raw elements `raw` of `dtype`, in the machine's byte order;
  bfloat16 widened to float32 (its bits are the upper half of a float32's)."""
  if dtype == _BFLOAT16:
    return (raw.astype(np.uint32) << 16).view(np.float32)
  return np.array(raw, dtype=dtype)


def _select(obj):
  """The state dict in `obj` -> (dict name -> _Tensor, wrapper key or None)."""

  def is_state_dict(d):
    return (isinstance(d, dict) and d and all(isinstance(k, str) for k in d)
            and all(isinstance(v, _Tensor) for v in d.values()))

  if is_state_dict(obj):
    return obj, None
  if not isinstance(obj, dict):
    raise _Bad(f"holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
  found = [k for k in WRAPPER_KEYS if is_state_dict(obj.get(k))]
  if len(found) > 1:
    raise _Bad(f"holds several state dicts (under {found}); save the one to import alone")
  if not found:
    keys = sorted(map(str, obj))
    raise _Bad(f"holds no state dict: its top-level keys are {keys[:12]}; expected a dict of "
               f"tensors, or one under a key of {list(WRAPPER_KEYS)}")
  return obj[found[0]], found[0]


def _read_pytorch(f, legacy):
  obj, read, byteorder = (_read_legacy if legacy else _read_zip)(f)
  tensors, wrapper = _select(obj)
  cache = {}
  arrays = {name: _materialize(name, t, read, byteorder, cache) for name, t in tensors.items()}
  return arrays, {
      "format": "pytorch-legacy" if legacy else "pytorch", "wrapper": wrapper,
      "ignored": sorted(str(k) for k in obj if k != wrapper) if wrapper else [],
      "dtypes": {name: t.dtype.name for name, t in tensors.items()}, "metadata": {}}


def _read_safetensors(f, size):
  (header_size,) = struct.unpack("<Q", f.read(8))
  if header_size > size - 8:
    raise _Bad(f"truncated: a header of {header_size} bytes in a file of {size}")
  header = json.loads(f.read(header_size))
  if not isinstance(header, dict):
    raise _Bad("a safetensors header that is not a JSON object")
  metadata = header.pop("__metadata__", None) or {}
  start, available = 8 + header_size, size - 8 - header_size
  spans = {}
  for key, entry in header.items():
    dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype"))
    if dtype is None:
      raise _Bad(f"tensor {key!r} has dtype {entry.get('dtype')!r}; readable dtypes: "
                 f"{sorted(_SAFETENSORS_DTYPES)}")
    shape, (begin, end) = tuple(entry["shape"]), entry["data_offsets"]
    if not all(type(i) is int and i >= 0 for i in (*shape, begin, end)):
      raise _Bad(f"tensor {key!r}: invalid shape {shape} or offsets {[begin, end]}")
    if end - begin != math.prod(shape) * dtype.itemsize:
      raise _Bad(f"tensor {key!r}: {end - begin} bytes for shape {shape} of {dtype.name}")
    if end > available:
      raise _Bad(f"truncated: tensor {key!r} ends at data byte {end} of {available}")
    spans[key] = (dtype, shape, begin)
  arrays = {}
  for key, (dtype, shape, begin) in spans.items():
    f.seek(start + begin)
    data = f.read(math.prod(shape) * dtype.itemsize)
    arrays[key] = _native(np.frombuffer(data, _raw(dtype, "<")).reshape(shape), dtype)
  return arrays, {
      "format": "safetensors", "wrapper": None, "ignored": [],
      "dtypes": {key: dtype.name for key, (dtype, _, _) in spans.items()},
      "metadata": metadata}


def read_state_dict(path):
  """The tensors of a PyTorch checkpoint: `(arrays, info)`.

  `path`: a file of `torch.save` (zip or pre-1.6 format; `.pth`, `.pt`, `.bin`, any name) or
  a `.safetensors` file; the format is recognised from the content. `arrays`: {key: NumPy
  array} with the keys as stored (prefixes such as `module.` are kept). `info`: "format"
  ("pytorch", "pytorch-legacy", "safetensors"), "wrapper" (the top-level key the state dict
  was found under, e.g. "state_dict", or None), "ignored" (the other top-level keys),
  "dtypes" ({key: stored dtype name}; bfloat16 arrays arrive as float32), "metadata" (the
  safetensors `__metadata__`, else {}).

  Raises ValueError naming the file for a missing, truncated or corrupt file, a pickle that
  names anything but tensors and plain containers (nothing in it is run), a dtype it cannot
  read, or a file holding no (or several) state dicts.
  """
  file = epath.Path(path)
  if not file.exists():
    raise ValueError(f"{path}: no such file")
  try:
    with file.open("rb") as f:
      size = f.seek(0, io.SEEK_END)
      f.seek(0)
      head = f.read(9)
      f.seek(0)
      if head.startswith(b"PK"):
        return _read_pytorch(f, legacy=False)
      if head[:1] == b"\x80" and 2 <= head[1:2][0] <= 5:
        return _read_pytorch(f, legacy=True)
      if len(head) == 9 and head[8:9] == b"{":
        return _read_safetensors(f, size)
      raise _Bad("neither a PyTorch checkpoint (torch.save) nor a safetensors file"
                 if size else "an empty file")
  except _Refused as e:
    raise ValueError(
        f"{path}: refused to unpickle {e}: unpickling calls what a file names, so a weights "
        f"file may name only tensors and plain containers (nothing was run); save "
        f"model.state_dict() instead") from None
  except _Bad as e:
    raise ValueError(f"{path}: {e}") from None
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zlib.error, struct.error,
          KeyError, IndexError, TypeError, AttributeError, ValueError, UnicodeDecodeError,
          OverflowError, RecursionError) as e:
    raise ValueError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {e})"
                     ) from None


def write_safetensors(path, arrays, metadata=None):
  """Writes {key: array} (NumPy or JAX arrays of bool, (u)int8-64, float16/32/64 or
  bfloat16) and optional {str: str} metadata as a `.safetensors` file, readable by
  `safetensors.torch.load_file` and `safetensors.numpy.load_file`. Arrays are laid out as the
  safetensors library does (by decreasing element size, then key), so each one is aligned.
  Everything is checked before the file is written, atomically (workdir.write_file; `path` local
  or on cloud storage): a bad key or dtype, or a job killed mid-write, leaves nothing behind."""
  prepared = {}
  for key, value in arrays.items():
    if not isinstance(key, str) or key == "__metadata__":
      raise ValueError(f"{path}: invalid tensor name {key!r}")
    array = np.asarray(value)
    if not array.dtype.isnative:  # safetensors is little endian, as are JAX's machines.
      array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype not in _SAFETENSORS_CODES:
      raise ValueError(f"{path}: array {key!r} has dtype {array.dtype}; writable dtypes: "
                       f"{sorted(d.name for d in _SAFETENSORS_CODES)}")
    prepared[key] = array
  if metadata is not None and not all(
      isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
    raise ValueError(f"{path}: safetensors metadata must map str to str, got {metadata!r:.200}")
  order = sorted(prepared, key=lambda k: (-prepared[k].dtype.itemsize, k))
  header, offset = {}, 0
  if metadata:
    header["__metadata__"] = dict(metadata)
  for key in order:
    array = prepared[key]
    header[key] = {"dtype": _SAFETENSORS_CODES[array.dtype], "shape": list(array.shape),
                   "data_offsets": [offset, offset + array.nbytes]}
    offset += array.nbytes
  text = json.dumps(header, separators=(",", ":")).encode()
  text += b" " * (-len(text) % 8)  # The data starts 8-byte aligned.
  data = [np.ascontiguousarray(prepared[key]) for key in order]  # joined as buffers: one copy
  workdir_lib.write_file(path, b"".join([struct.pack("<Q", len(text)), text, *data]))
