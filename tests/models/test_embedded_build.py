"""The embedded model's llama.cpp is built portable (``pyproject.toml`` passes
``-DGGML_NATIVE=OFF``): a build tuned to the building CPU used AMX on a virtual machine that
lists AMX without enabling it, and every embedded-model test died with SIGILL."""

from __future__ import annotations

import platform

import pytest

llama_cpp = pytest.importorskip("llama_cpp")

TUNED = ("AMX_INT8 = 1", "AVX512 = 1", "AVX512_VNNI = 1", "AVX512_BF16 = 1", "AVX_VNNI = 1")


@pytest.mark.skipif(platform.machine() not in {"x86_64", "AMD64"}, reason="x86 features only")
def test_llama_cpp_uses_no_cpu_features_beyond_x86_64_v3() -> None:
    info = llama_cpp.llama_print_system_info().decode()
    assert "AVX2 = 1" in info, info  # still vectorised
    assert not [f for f in TUNED if f in info], info
