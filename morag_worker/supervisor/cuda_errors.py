"""Classify CUDA failures seen inside a child, by the text the libraries put in them.

Children call :func:`classify_cuda_error` on any exception that escapes a task. The
supervisor acts on the answer:

- ``"oom"``: the device ran out of memory. The CUDA context is still usable, but the
  caching allocator is fragmented and the models may be half-loaded: recycle the child
  after the task and retry the task once on a fresh child.
- ``"fatal"``: the CUDA context is dead (errors are "sticky": every later call fails
  too). The child must be replaced. :func:`is_device_fault` says whether the hardware
  itself is suspect (ECC, fallen off the bus, lost device, Xid), in which case the GPU is
  quarantined at once; other fatal errors (illegal address, device-side assert, launch
  failure) can be a bug triggered by one input and count towards the slot's crash budget.
- ``None``: not a CUDA failure this module recognises.

Matching is on messages because torch, CTranslate2 and onnxruntime each wrap the CUDA
runtime's error strings in their own exception types.
"""

from __future__ import annotations

import re
from typing import Literal

CudaErrorKind = Literal["oom", "fatal"]

_OOM = re.compile(
    r"cuda\b.*\bout of memory|\bout of memory\b.*\bcuda"
    r"|CUDA_ERROR_OUT_OF_MEMORY|cudaErrorMemoryAllocation"
    r"|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|OutOfMemoryError",
    re.IGNORECASE,
)

_DEVICE_FAULT = re.compile(
    r"uncorrectable ECC error|ECC_UNCORRECTABLE|cudaErrorECCUncorrectable"
    r"|GPU is lost|GPU_IS_LOST|fallen off the bus|\bXid\b"
    r"|uncorrectable NVLink error|CUDA_ERROR_NVLINK_UNCORRECTABLE"
    r"|no CUDA-capable device is detected|cudaErrorNoDevice",
    re.IGNORECASE,
)

_CONTEXT_LOST = re.compile(
    r"illegal memory access|CUDA_ERROR_ILLEGAL_ADDRESS|cudaErrorIllegalAddress"
    r"|illegal instruction was encountered|CUDA_ERROR_ILLEGAL_INSTRUCTION"
    r"|misaligned address|unspecified launch failure|CUDA_ERROR_LAUNCH_FAILED"
    r"|cudaErrorLaunchFailure|device-side assert|CUDA_ERROR_ASSERT"
    r"|hardware stack error|CUDA error: unknown error",
    re.IGNORECASE,
)


def classify_cuda_error(error: BaseException | str) -> CudaErrorKind | None:
    """``"oom"``, ``"fatal"`` or ``None`` for an exception (its whole cause chain and type
    names are read) or a message. A fatal error wins over an out-of-memory in the same
    chain: once the context is dead, freeing memory cannot help.
    """
    text = _describe(error)
    if _DEVICE_FAULT.search(text) or _CONTEXT_LOST.search(text):
        return "fatal"
    if _OOM.search(text):
        return "oom"
    return None


def is_device_fault(error: BaseException | str) -> bool:
    """Whether the failure points at the GPU hardware, not at the task that ran on it."""
    return bool(_DEVICE_FAULT.search(_describe(error)))


#: How many linked exceptions (``__cause__``/``__context__``) to read; chains are short,
#: the limit only guards against cycles.
_MAX_CHAIN = 16


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(parts) < _MAX_CHAIN:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)
