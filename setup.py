"""Builds crnn_fast._C from csrc/.

The C++ (CPU) sources are always compiled. The CUDA sources are added when torch was built with CUDA and
nvcc is found; CRNN_FAST_BUILD_CUDA=auto|0|1 overrides ("1" fails loudly if CUDA cannot be built).
CRNN_FAST_CUDA_ARCHS (default "8.0;9.0") picks the GPU architectures.
"""

import glob
import os
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_wanted(torch_cuda_version, nvcc):
    mode = os.environ.get("CRNN_FAST_BUILD_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        sys.exit(f"CRNN_FAST_BUILD_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False
    available = torch_cuda_version is not None and nvcc is not None
    if mode == "1" and not available:
        why = "torch has no CUDA" if torch_cuda_version is None else "nvcc was not found"
        sys.exit(f"CRNN_FAST_BUILD_CUDA=1 but {why}")
    return available


def _find_nvcc():
    """nvcc inside a CUDA toolkit folder (a bare `nvcc` on PATH may be a wrapper script elsewhere)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for home in filter(None, candidates):
        if os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def _extensions():
    nvcc = _find_nvcc()
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cxx_flags = ["-O3", "-fopenmp"]  # torch picks the C++ standard its headers need
    build_cuda = _cuda_wanted(torch.version.cuda, nvcc)
    print(f"crnn_fast: building CUDA sources: {build_cuda}", flush=True)
    if not build_cuda:
        return [
            CppExtension(
                "crnn_fast._C", sources, extra_compile_args={"cxx": cxx_flags},
                extra_link_args=["-fopenmp"]
            )
        ]

    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", os.environ.get("CRNN_FAST_CUDA_ARCHS", "8.0;9.0"))
    sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cpp"))
                      + glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    # torch's CUDA wheels ship cuBLAS/cuSPARSE headers under nvidia/cu*/include, which ATen's CUDA headers
    # need and a bare toolkit may lack. -idirafter: the toolkit's own headers must still win.
    wheel_includes = []
    try:
        import nvidia

        for base in nvidia.__path__:
            wheel_includes += sorted(glob.glob(os.path.join(base, "cu*", "include")))
    except ImportError:
        pass
    cxx_flags += [flag for d in wheel_includes for flag in ("-idirafter", d)]
    return [
        CUDAExtension(
            "crnn_fast._C", sources,
            extra_compile_args={
                "cxx": cxx_flags + ["-DCRNN_FAST_WITH_CUDA"],
                "nvcc": ["-O3", "-lineinfo", "-DCRNN_FAST_WITH_CUDA"],
            },
            extra_link_args=["-fopenmp"]
        )
    ]


def main():
    nvcc = _find_nvcc()
    if nvcc and not os.environ.get("CUDA_HOME"):
        # Before torch.utils.cpp_extension is imported: it guesses CUDA_HOME from `which nvcc`, which is wrong
        # when that is a wrapper script outside the toolkit.
        os.environ["CUDA_HOME"] = os.path.dirname(os.path.dirname(nvcc))
    from torch.utils.cpp_extension import BuildExtension

    setup(
        ext_modules=_extensions(),
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    )


if __name__ == "__main__":
    main()
