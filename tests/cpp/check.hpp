// The C++ tests' expectation helper: check() prints a failed expectation and counts it, and
// each test's main returns 1 when check_failures() is not 0. Shared by tests/cpp/test_*.cpp.
#pragma once

#include <cstdio>
#include <string>

inline int& check_failures() {
  static int n = 0;
  return n;
}

inline void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++check_failures();
  }
}
