// The portable kernel set: the fused engine (cpu/engine.hpp) over plain 8-lane structs that
// the compiler vectorizes for the target's base ISA; runs on any CPU. Checked by
// tests/test_native.py and tests/cpp/test_engine.cpp against the scalar reference.
#define SEQFUSE_NS isa_portable
// The traits first: the engine is written over them.
#include "cpu/simd_portable.hpp"
//
#include "cpu/engine.hpp"

SEQFUSE_KERNEL_SET(portable)
