"""The fused engine: a cell compiled to Numba kernels (`compiler`), the recurrence that runs them
(`recurrence`), the packed GEMM kernel (`packed_gemm`: per step, and over a window where it beats
the BLAS; `packed_gemm_bf16` in bf16, both driven by `panel_driver`), the input projection on it
(`projection`) and the loop templates (`loops`)."""
