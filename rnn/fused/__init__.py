"""The fused engine: a cell compiled to Numba kernels (`compiler`), the recurrence that runs them
(`recurrence`), the packed per-step GEMM (`packed_gemm`) and the loop templates (`loops`)."""
