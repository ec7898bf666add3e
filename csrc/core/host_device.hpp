// SEQFUSE_HD marks a function for host and device code alike (nvcc) and is empty for a plain
// C++ compiler: the cell formulas (core/cell.hpp) and the CUDA planner's layout helpers
// (cuda/plan.hpp) are written once for both. Checked by every build (CUDA on and off).
#pragma once

#ifdef __CUDACC__
#define SEQFUSE_HD __host__ __device__
#else
#define SEQFUSE_HD
#endif
