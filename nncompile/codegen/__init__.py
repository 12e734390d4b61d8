"""Code generation: IR kernels -> LLVM IR (llvmlite) -> native code for the host CPU."""
